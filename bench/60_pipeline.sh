#!/bin/sh
# 60_pipeline.sh BUILD — pipeline inference across nodes on 127.0.0.1 (issue 7): (a) single
# session tok/s vs single-process, (b) added latency per hop, (c) 4 concurrent sessions vs 1,
# (d) time to first token for a 512-token prompt chunked vs whole, (e) recovery after a
# killed stage. Model: synth tinyllama-1.1b Q4_0 split into 2 and 4 (BUILD/bench-models).
# Environment: SW_BENCH_THREADS, SW_BENCH_PIPE_MODEL (a smaller GGUF), SW_BENCH_GEN.
set -eu
build=${1:-build}
here=$(dirname "$0")
export SW_BIN="${SW_BIN:-$PWD/$build/shardswarm}" SW_BUILD_DIR="${SW_BUILD_DIR:-$PWD/$build}"
export SW_SHARED_DATA="${SW_SHARED_DATA:-$PWD/../shared/data}"
exec /usr/bin/python3 "$here/pipeline_bench.py"
