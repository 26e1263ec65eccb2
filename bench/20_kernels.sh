#!/bin/sh
# 20_kernels.sh BUILD — kernel microbenchmark: matvec GB/s (1 token, memory bound) and
# matmul GFLOP/s (128 tokens, compute bound) per weight type, TinyLlama-shaped weights
# 5632x2048 and 2048x5632, 2 threads; the run-time family first, then AVX2 for comparison
# when the CPU has AVX-512. See docs/kernels.md.
set -u
build=${1:-build}
bin="$build/bench/bench_kernels"
if [ ! -x "$bin" ]; then
  echo "bench_kernels not built ($bin); build the target bench_kernels first"
  exit 1
fi
threads=${SW_BENCH_THREADS:-2}
"$bin" -t "$threads" -n 128 || exit 1
if grep -q avx512_vnni /proc/cpuinfo 2>/dev/null; then
  echo
  SW_KERNELS=avx2 "$bin" -t "$threads" -n 128 Q4_0 Q4_K Q6_K Q8_0 F16 Q2_K Q3_K IQ4_XS IQ4_NL MXFP4
fi

# End to end: prompt (128) and generation (64) tokens/s of the low-bit types on the
# TinyLlama-1.1B shape (synth, generated once into BUILD/bench-models), beside llama.cpp
# through node-llama-cpp when SW_NLC_MODULES names a node_modules folder holding
# node-llama-cpp 3.22.x (runs alternate between the engines; medians).
# Environment: SW_BENCH_LOWBIT_TYPES (default "Q2_K Q3_K IQ4_XS"), SW_BENCH_RUNS (3).
shard="$build/shardswarm"
[ -x "$shard" ] || exit 0
vocab=""
for d in "${SW_SHARED_DATA:-}" ../shared/data; do
  if [ -n "$d" ] && [ -f "$d/vocab/ggml-vocab-llama-spm.gguf" ]; then
    vocab="$d/vocab/ggml-vocab-llama-spm.gguf"
    break
  fi
done
[ -n "$vocab" ] || { echo "ggml-vocab-llama-spm.gguf not found (set SW_SHARED_DATA): no end-to-end rows"; exit 0; }
nlc=""
if [ -n "${SW_NLC_MODULES:-}" ] && [ -f "$SW_NLC_MODULES/node-llama-cpp/package.json" ] && command -v node >/dev/null; then
  nlc="$SW_NLC_MODULES"
fi
runs=${SW_BENCH_RUNS:-3}
mkdir -p "$build/bench-models" || exit 1
results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo
echo "end to end, tinyllama-1.1b (synth), $threads threads, load: $(uptime | sed 's/.*average: //')"
for t in ${SW_BENCH_LOWBIT_TYPES:-Q2_K Q3_K IQ4_XS}; do
  m="$build/bench-models/tinyllama-1.1b-$t.gguf"
  if [ ! -f "$m" ]; then
    echo "generating $m (once) ..."
    "$shard" synth --preset tinyllama-1.1b --type "$t" --seed 1 --vocab "$vocab" -o "$m" 2>&1 | tail -1 || exit 1
  fi
  i=0
  while [ $i -le "$runs" ]; do # run 0 warms the page cache
    line=$("$shard" generate -m "$m" --prompt-len 128 -n 65 --temp 0 --ignore-eos --ids -t "$threads" \
           --json-timings 2>&1 >/dev/null | grep '^{' | tail -1)
    [ $i -gt 0 ] && [ -n "$line" ] && echo "$t ours $line" >>"$results"
    if [ -n "$nlc" ]; then
      line=$(node "$(dirname "$0")/nlc_speed.mjs" "$nlc" "$m" "$threads" 128 64 2>/dev/null | grep '^{' | tail -1)
      [ $i -gt 0 ] && [ -n "$line" ] && echo "$t llama.cpp $line" >>"$results"
    fi
    i=$((i + 1))
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for l in open(sys.argv[1]):
    t, eng, js = l.split(" ", 2)
    rows.setdefault((t, eng), []).append(json.loads(js))
print("%-7s %10s %10s %6s   %9s %10s %6s" % ("type", "pp128 t/s", "llama.cpp", "ratio", "tg64 t/s", "llama.cpp", "ratio"))
for t in dict.fromkeys(k[0] for k in rows):
    o, r = rows.get((t, "ours"), []), rows.get((t, "llama.cpp"), [])
    med = lambda v, k: statistics.median(x[k] for x in v) if v else None
    op, og, rp, rg = med(o, "prompt_tps"), med(o, "gen_tps"), med(r, "prompt_tps"), med(r, "gen_tps")
    f = lambda v: "%.1f" % v if v else "-"
    q = lambda a, b: "%.2f" % (a / b) if a and b else "-"
    print("%-7s %10s %10s %6s   %9s %10s %6s" % (t, f(op), f(rp), q(op, rp), f(og), f(rg), q(og, rg)))
PY
