#!/bin/sh
# bench.sh BUILD — runs every bench/*.sh section in order; each prints its own table.
set -eu
build=${1:-build}
export SW_BIN="$PWD/$build/shardswarm" SW_BUILD_DIR="$PWD/$build"
for s in bench/*.sh; do
  [ -f "$s" ] || continue
  echo "== $(basename "$s" .sh)"
  sh "$s" "$build" || echo "(section $(basename "$s") failed)"
  echo
done
