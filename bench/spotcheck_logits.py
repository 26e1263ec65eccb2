#!/usr/bin/env python3
"""spotcheck_logits.py MODEL.gguf — how far two honest kernel families' logits are apart,
against the last shard's spot-check tolerance (docs/pipeline.md "Spot checks", "The last
shard").

Runs single-process `shardswarm generate` twice on MODEL with the same synthetic prompt,
greedy, `--logits-out`: once with the best kernels of this machine, once with SW_KERNELS=ref
(the reference C kernels); SW_BENCH_KERNELS_B=NAME picks another family for the second run
(e.g. avx2 on a machine with AVX-512). Per step: max |logit difference| relative to the
row's largest |logit| (the check allows rtol = 0.05 of it per logit, two sides: 0.1), and
the gap of the first run's greedy token on the second run's logits below their best.

Environment: SW_BIN (default build/shardswarm), SW_BENCH_GEN (default 32), SW_BENCH_PROMPT
(default 16), SW_BENCH_THREADS (default 2).
"""
import array
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("SW_BIN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "shardswarm")
N_GEN = int(os.environ.get("SW_BENCH_GEN") or 32)
PROMPT = int(os.environ.get("SW_BENCH_PROMPT") or 16)
THREADS = os.environ.get("SW_BENCH_THREADS") or "2"


def run(model, out, kernels):
    env = dict(os.environ)
    env.pop("SW_KERNELS", None)
    if kernels:
        env["SW_KERNELS"] = kernels
    args = [BIN, "generate", "-m", model, "--prompt-len", str(PROMPT), "-n", str(N_GEN), "--temp", "0", "--ignore-eos",
            "--ids", "--logits-out", out, "-t", THREADS]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        sys.exit("generate failed (%s):\n%s" % (kernels or "best", r.stderr[-2000:]))
    a = array.array("f")
    with open(out, "rb") as f:
        a.frombytes(f.read())
    return a, r.stdout.split()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model = sys.argv[1]
    kb = os.environ.get("SW_BENCH_KERNELS_B") or "ref"
    with tempfile.TemporaryDirectory(prefix="sw-spotlogits-") as d:
        a, ta = run(model, os.path.join(d, "a.bin"), None)
        b, tb = run(model, os.path.join(d, "b.bin"), kb)
    if len(a) != len(b) or not len(a):
        sys.exit("logit files differ in size: %d, %d floats" % (len(a), len(b)))
    nv = len(a) // (N_GEN + 1)
    # row r's logits pick token r; row r + 1 was fed token r: rows past the first token the
    # two runs disagree on have other inputs, and are not compared
    first = next((i for i in range(min(len(ta), len(tb))) if ta[i] != tb[i]), None)
    n_rows = len(a) // nv if first is None else first + 1
    worst_rel, worst_gap_rel, worst_gap = 0.0, 0.0, 0.0
    for r in range(n_rows):
        ra, rb = a[r * nv:(r + 1) * nv], b[r * nv:(r + 1) * nv]
        big = max(max(abs(x) for x in ra), 1e-6)
        d = max(abs(x - y) for x, y in zip(ra, rb))
        best_a = max(range(nv), key=lambda i: ra[i])
        gap = max(rb) - rb[best_a]
        worst_rel = max(worst_rel, d / big)
        worst_gap = max(worst_gap, gap)
        worst_gap_rel = max(worst_gap_rel, gap / (2 * big))
        print("row %d: largest |logit| %.4g, max |diff| %.4g (%.4g of it), best %d vs %d, gap %.4g" %
              (r, big, d, d / big, best_a, max(range(nv), key=lambda i: rb[i]), gap), file=sys.stderr)
    print("%s: %d steps x %d logits, best kernels vs %s: max |logit diff| / the row's largest |logit| = %.4g "
          "(tolerance per logit 0.05); greedy token's gap on the other's logits: worst %.4g logits, rel %.4g "
          "(fails above 0.05); tokens identical: %s" % (os.path.basename(model), n_rows, nv, kb, worst_rel, worst_gap,
                                                      worst_gap_rel, "yes" if first is None else "up to token %d" % first))


if __name__ == "__main__":
    main()
