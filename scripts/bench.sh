#!/bin/sh
# bench.sh BUILD — runs every bench/*.sh section in order; each prints its own table.
# SW_BENCH_SECTIONS picks some ("20 25": the kernel and llama.cpp sections only).
set -eu
build=${1:-build}
export SW_BIN="$PWD/$build/shardswarm" SW_BUILD_DIR="$PWD/$build"
for s in bench/*.sh; do
  [ -f "$s" ] || continue
  name=$(basename "$s" .sh)
  if [ -n "${SW_BENCH_SECTIONS:-}" ]; then
    case " $SW_BENCH_SECTIONS " in *" ${name%%_*} "* | *" $name "*) ;; *) continue ;; esac
  fi
  echo "== $name ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
  sh "$s" "$build" || echo "(section $name failed)"
  echo
done
