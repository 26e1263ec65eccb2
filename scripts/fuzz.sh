#!/bin/sh
# fuzz.sh BUILD SECONDS — runs every libFuzzer target for SECONDS on its corpus; new crash
# inputs land in fuzz/crashes/<name>/ so the normal suite replays them from then on.
set -eu
build=$1; secs=$2
for bin in "$build"/fuzz/fuzz_*; do
  case "$bin" in *_replay) continue ;; esac
  [ -x "$bin" ] || continue
  name=$(basename "$bin" | sed 's/^fuzz_//')
  mkdir -p "fuzz/corpus/$name" "fuzz/crashes/$name"
  work=$(mktemp -d)
  echo "== fuzz $name (${secs}s)"
  "$bin" -max_total_time="$secs" -artifact_prefix="fuzz/crashes/$name/" "$work" "fuzz/corpus/$name" || true
  rm -rf "$work"
done
