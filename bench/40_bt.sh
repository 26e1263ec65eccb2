#!/bin/sh
# 40_bt.sh BUILD — BitTorrent transfer rates: (a) 1 GiB one-to-one on loopback, shardswarm
# vs aria2c vs libtorrent; (b) one seeder to 8 leechers with every uplink limited by tc tbf
# (one network namespace per node; needs root). See bench/bt_bench.py and docs/bt-interop.md.
set -eu
build=${1:-build}
: "${SW_BIN:=$PWD/$build/shardswarm}"
export SW_BIN
exec /usr/bin/python3 "$(dirname "$0")/bt_bench.py"
