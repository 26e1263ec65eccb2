#!/bin/sh
# 25_llamacpp.sh BUILD — shardswarm beside llama.cpp in the same run: decode and prefill
# tokens/s per weight type (TinyLlama-1.1B shape), 1 and 2 threads, each kernel family, the
# ratio and the fraction of the measured read bandwidth (bench_bwprobe); Mixtral and
# Qwen3-MoE shapes cut to 2 layers; decode under CPU contention; the 7B shape. llama.cpp is
# its llama-bench built natively (once, into BUILD/llama.cpp) from the source node-llama-cpp
# 3.22.1 carries, else node-llama-cpp's prebuilt binary. Knobs: bench/llamacpp_side.py.
set -u
exec python3 "$(dirname "$0")/llamacpp_side.py" "${1:-build}"
