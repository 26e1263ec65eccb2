#!/bin/sh
# 10_infer.sh BUILD — end-to-end inference speed: prompt processing (128 tokens) and
# generation (64 tokens) in tokens/s for `synth --preset tinyllama-1.1b` in Q4_0, Q4_K_M,
# Q8_0 and F16, 2 threads, the median of several runs, with peak resident memory, beside
# llama.cpp's figures on this machine class. Models are generated once into
# BUILD/bench-models (deterministic: seed 1). See docs/infer.md.
# Environment: SW_BENCH_RUNS (default 3), SW_BENCH_THREADS (2), SW_BENCH_TYPES.
set -u
build=${1:-build}
bin="$build/shardswarm"
if [ ! -x "$bin" ]; then
  echo "shardswarm not built ($bin)"
  exit 1
fi
runs=${SW_BENCH_RUNS:-3}
threads=${SW_BENCH_THREADS:-2}
types=${SW_BENCH_TYPES:-"Q4_0 Q4_K_M Q8_0 F16"}
models="$build/bench-models"
mkdir -p "$models" || exit 1
vocab=""
for d in "${SW_SHARED_DATA:-}" ../shared/data; do
  if [ -n "$d" ] && [ -f "$d/vocab/ggml-vocab-llama-spm.gguf" ]; then
    vocab="$d/vocab/ggml-vocab-llama-spm.gguf"
    break
  fi
done
if [ -z "$vocab" ]; then
  echo "ggml-vocab-llama-spm.gguf not found (set SW_SHARED_DATA); skipping"
  exit 0
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for t in $types; do
  m="$models/tinyllama-1.1b-$t.gguf"
  if [ ! -f "$m" ]; then
    echo "generating $m (once) ..."
    "$bin" synth --preset tinyllama-1.1b --type "$t" --seed 1 --vocab "$vocab" -o "$m" 2>&1 | tail -1 || exit 1
  fi
  # One warm-up run maps the file into the page cache; then the measured runs.
  i=0
  while [ $i -le "$runs" ]; do
    line=$("$bin" generate -m "$m" --prompt-len 128 -n 65 --temp 0 --ignore-eos --ids -t "$threads" \
           --json-timings 2>&1 >/dev/null | grep '^{' | tail -1)
    if [ -z "$line" ]; then
      echo "generate failed on $m"
      break
    fi
    [ $i -gt 0 ] && echo "$t $line" >>"$results"
    i=$((i + 1))
  done
done

python3 - "$results" "$threads" "$runs" <<'EOF'
import json, statistics, sys
path, threads, runs = sys.argv[1], sys.argv[2], sys.argv[3]
# llama.cpp on this machine class, same model shape, 2 threads (issue 3).
ref_tg = {"Q4_0": 21, "Q4_K_M": 17, "Q8_0": 13, "F16": 7.5}
ref_pp = {"Q4_0": 55, "Q4_K_M": 41, "Q8_0": 50, "F16": 61}
rows = {}
for l in open(path):
    t, js = l.split(" ", 1)
    rows.setdefault(t, []).append(json.loads(js))
kern = next((r[0].get("kernels", "?") for r in rows.values() if r), "?")
print("tinyllama-1.1b (synth), %s threads, median of %s runs, kernels %s" % (threads, runs, kern))
print("%-7s %10s %9s %6s   %10s %9s %6s   %9s" % ("type", "pp128 t/s", "llama.cpp", "ratio",
                                                "tg64 t/s", "llama.cpp", "ratio", "peak RSS"))
for t in ["Q4_0", "Q4_K_M", "Q8_0", "F16", "Q4_K", "Q5_K", "Q6_K", "BF16", "F32"]:
    if t not in rows:
        continue
    pp = statistics.median(r["prompt_tps"] for r in rows[t])
    tg = statistics.median(r["gen_tps"] for r in rows[t])
    rss = max(r["peak_rss"] for r in rows[t]) / 1e6
    rp, rt = ref_pp.get(t), ref_tg.get(t)
    print("%-7s %10.1f %9s %6s   %10.2f %9s %6s   %7.0f MB" % (
        t, pp, rp or "-", "%.2f" % (pp / rp) if rp else "-",
        tg, rt or "-", "%.2f" % (tg / rt) if rt else "-", rss))
EOF
