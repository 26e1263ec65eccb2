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

# End-to-end rows of every type beside llama.cpp: bench/25_llamacpp.sh.
