#!/bin/sh
# 45_private.sh BUILD — what a private swarm costs: seal/open GB/s and the per-hop time of the
# Noise record layer (bench_noise), the encrypted link alone (bench_noise_link: PIECE messages
# between two processes, no disk), and a 1 GiB loopback transfer plain vs --swarm-key.
# SW_BINS="old/shardswarm new/shardswarm" alternates two builds (bench/private_bench.py).
# See bench/private_bench.py and docs/protocol.md.
set -eu
build=${1:-build}
: "${SW_BIN:=$PWD/$build/shardswarm}"
SW_BUILD_DIR=$PWD/$build
export SW_BIN SW_BUILD_DIR
exec /usr/bin/python3 "$(dirname "$0")/private_bench.py"
