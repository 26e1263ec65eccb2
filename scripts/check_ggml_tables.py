#!/usr/bin/env python3
"""check_ggml_tables.py — compares the codebook tables written down in src/infer (format
constants of the IQ weight types) with llama.cpp's ggml-common.h, value by value.

  scripts/check_ggml_tables.py LLAMA_SRC [C_FILE ...]

LLAMA_SRC is a llama.cpp checkout (node-llama-cpp 3.22.1 carries one as a git bundle:
node_modules/node-llama-cpp/llama/gitRelease.bundle, `git clone` it). Every array
`const uintN_t sw__k_NAME[N] = {...}` of the C files (default: src/infer/iq2_grids.c and iq3_grids.c) must
equal ggml's `GGML_TABLE_BEGIN(uintN_t, NAME, N)` table. Exit 0 when all match."""
import os
import re
import sys


def c_tables(text, pattern):
    out = {}
    for m in re.finditer(pattern, text, re.S):
        vals = [int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\b\d+\b", m.group(4))]
        # a count given by a macro (ggml's NGRID_IQ1S) is the number of values
        out[m.group(2)] = (m.group(1), int(m.group(3)) if m.group(3).isdigit() else len(vals), vals)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = sys.argv[2:] or [os.path.join(root, "src", "infer", n) for n in ("iq2_grids.c", "iq3_grids.c")]
    with open(os.path.join(sys.argv[1], "ggml", "src", "ggml-common.h")) as f:
        ggml = c_tables(f.read(), r"GGML_TABLE_BEGIN\((\w+), (\w+), (\w+)\)(.*?)GGML_TABLE_END")
    bad = 0
    for path in files:
        with open(path) as f:
            text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        ours = c_tables(text, r"const (\w+) sw__k_(\w+)\[(\d+)\] = \{(.*?)\};")
        for name, (ctype, n, vals) in ours.items():
            ref = ggml.get(name)
            if ref is None:
                print("%s: %s: no table of that name in ggml-common.h" % (path, name))
                bad += 1
            elif (ctype, n, vals) != ref:
                diff = [i for i, (a, b) in enumerate(zip(vals, ref[2])) if a != b]
                print("%s: %s differs (type %s/%s, size %d/%d, first differing entries %s)"
                      % (path, name, ctype, ref[0], n, ref[1], diff[:5]))
                bad += 1
            else:
                print("%s: %s[%d] equal to ggml-common.h" % (os.path.basename(path), name, n))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
