#!/bin/sh
# 30_dht.sh BUILD — the DHT simulation: 10,000 nodes, 1% loss, with and without 20% churn.
# Prints the table (success, hops, simulated time, queries per lookup); see docs/dht.md.
set -u
build=${1:-build}
bin="$build/bench/bench_dht_sim"
if [ ! -x "$bin" ]; then
  echo "bench_dht_sim not built ($bin); build the target bench_dht_sim first"
  exit 1
fi
"$bin" --nodes "${SW_DHT_SIM_NODES:-10000}" --lookups "${SW_DHT_SIM_LOOKUPS:-500}"
