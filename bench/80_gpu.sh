#!/bin/sh
# 80_gpu.sh BUILD — the Vulkan backend on a GPU beside llama.cpp's Vulkan backend (node-llama-cpp
# 3.22.1's prebuilt binary, npm @node-llama-cpp/linux-x64-vulkan) on the same synth GGUF files:
# prefill and decode tokens/s, the ratio, and the fraction of the card's memory bandwidth our
# decode reaches. TinyLlama-1.1B shape in Q4_0, Q4_K_M, Q8_0, F16 and a Llama-2-7B shape in
# Q4_0 (docs/gpu.md). Meant for a machine with a GPU: `--gpu auto` never takes a software
# device, so without one every row says so. On lavapipe (no GPU) it runs with
#   VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json SW_BENCH_GPU=0 \
#   SW_BENCH_CASES="tiny:Q4_0 tiny:Q8_0" bench/80_gpu.sh build
# Environment: see bench/gpu_side.py (SW_BENCH_GPU, SW_BENCH_CASES, SW_BENCH_RUNS, SW_BENCH_PP,
# SW_BENCH_TG, SW_GPU_BW_GBS, SW_BENCH_MODELS, SW_NLC_MODULES).
set -u
exec python3 "$(dirname "$0")/gpu_side.py" "${1:-build}"
