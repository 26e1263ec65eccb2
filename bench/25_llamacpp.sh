#!/bin/sh
# 25_llamacpp.sh BUILD — shardswarm beside llama.cpp (node-llama-cpp 3.22.1's prebuilt CPU
# binary, installed into BUILD/npm) on the same synth GGUF files and thread count: prefill and
# decode tokens/s and the ratio, alternating runs, medians. TinyLlama-1.1B shape in Q4_0, Q2_K,
# Q3_K, IQ4_XS; Mixtral-8x7B and Qwen3-30B-A3B shapes cut to 2 layers (SW_BENCH_MOE_LAYERS).
# The llama.cpp column is skipped with a message when npm is unreachable. See bench/llamacpp_side.py.
set -u
exec python3 "$(dirname "$0")/llamacpp_side.py" "${1:-build}"
