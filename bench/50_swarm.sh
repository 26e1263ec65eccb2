#!/bin/sh
# 50_swarm.sh BUILD — swarm readiness timings (issue 6): time from a shard file appearing
# to every node reporting ready, and from starting 8 nodes holding their shards to every
# node reporting ready. Real `shardswarm node` processes on 127.0.0.1.
set -eu
build=${1:-build}
here=$(dirname "$0")
export SW_BIN="${SW_BIN:-$PWD/$build/shardswarm}" SW_BUILD_DIR="${SW_BUILD_DIR:-$PWD/$build}"
export SW_SHARED_DATA="${SW_SHARED_DATA:-$PWD/../shared/data}"
exec /usr/bin/python3 "$here/swarm_ready.py"
