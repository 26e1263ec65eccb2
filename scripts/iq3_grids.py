#!/usr/bin/env python3
"""iq3_grids.py — the IQ3_XXS, IQ3_S and IQ1_S/IQ1_M codebooks of src/infer/iq3_grids.c,
taken from llama.cpp's ggml-common.h (where ggml defines them: the formats have no rule
that regenerates them). scripts/check_ggml_tables.py compares every value with it.

  scripts/iq3_grids.py write GGML_COMMON_H > FILE      write the C file

GGML_COMMON_H: ggml/src/ggml-common.h of the llama.cpp that node-llama-cpp 3.22.1 bundles
(llama/gitRelease.bundle in its npm package; docs/kernels.md, "Lookup tables")."""
import re
import sys

# our name, ggml's name, C element type, count, digits per value
TABLES = [("sw__k_iq3xxs_grid", "iq3xxs_grid", "uint32_t", 256, 8),
          ("sw__k_iq3s_grid", "iq3s_grid", "uint32_t", 512, 8),
          ("sw__k_iq1s_grid", "iq1s_grid", "uint64_t", 2048, 16)]


def table(text, name, ctype, n):
    m = re.search(r"GGML_TABLE_BEGIN\(\s*%s\s*,\s*%s\s*,[^)]*\)(.*?)GGML_TABLE_END" % (ctype, name), text, re.S)
    if not m:
        m = re.search(r"%s\s+%s\s*\[[^\]]*\]\s*=\s*\{(.*?)\};" % (ctype, name), text, re.S)
    if not m:
        sys.exit("%s: table %s not found" % (sys.argv[2], name))
    vals = [int(v, 16) for v in re.findall(r"0x[0-9a-fA-F]+", m.group(1))]
    if len(vals) != n:
        sys.exit("%s: %d values, expected %d" % (name, len(vals), n))
    return vals


def main():
    if len(sys.argv) < 3 or sys.argv[1] != "write":
        sys.exit(__doc__)
    ggml = open(sys.argv[2]).read()
    print("/* iq3_grids.c — the codebooks of IQ3_XXS (256 points of 4 magnitudes), IQ3_S (512\n"
          " * points of 4 magnitudes) and IQ1_S / IQ1_M (2048 points of 8 values in {-1, 0, 1}),\n"
          " * one byte per coordinate, little-endian: coordinate j of a point is byte j of its word.\n"
          " * They are part of the file formats (ggml defines them as data, with no rule that\n"
          " * regenerates them): written down from llama.cpp's ggml-common.h by\n"
          " * scripts/iq3_grids.py; scripts/check_ggml_tables.py checks them against it (docs/kernels.md;\n"
          " * ggml's MIT notice for these values: NOTICE).\n"
          " * Not for: the sign table of IQ3_XXS (computed: kernels_ref_iq3.c). */\n"
          "#include \"infer/kernels_iq3.h\"\n")
    for ours, theirs, ctype, n, digits in TABLES:
        vals = table(ggml, theirs, ctype, n)
        print("const %s %s[%d] = {" % (ctype, ours, n))
        per = 8 if digits == 8 else 4
        for i in range(0, n, per):
            print("    " + ", ".join("0x%0*x" % (digits, v) for v in vals[i:i + per]) + ",")
        print("};\n")


if __name__ == "__main__":
    main()
