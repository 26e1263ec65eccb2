#!/bin/sh
# 70_scale.sh BUILD — a swarm at real scale (issue 11): 8 nodes, a model of 7B shape (synth
# llama2-7b Q4_0, 3.8 GB, generated into BUILD/bench-models once and split into 8 shards
# once), half of them fetching their shard from a seeder: time to ready, memory per node,
# first token of a 512-token prompt and decode tokens/s (swarm / single process), 2 and 4
# concurrent sessions. Needs ~12 GB of memory and minutes. See bench/scale_bench.py for
# the environment (SW_BENCH_SCALE_MODEL, SW_BENCH_SCALE_PROMPT, SW_BENCH_SCALE_GEN, ...).
set -eu
build=${1:-build}
here=$(dirname "$0")
export SW_BIN="${SW_BIN:-$PWD/$build/shardswarm}" SW_BUILD_DIR="${SW_BUILD_DIR:-$PWD/$build}"
export SW_SHARED_DATA="${SW_SHARED_DATA:-$PWD/../shared/data}"
exec /usr/bin/python3 "$here/scale_bench.py"
