#!/bin/sh
# demo.sh BUILD — the main job: the most complete end-to-end run that exists today.
set -eu
build=${1:-build}
bin="$build/shardswarm"
model="../shared/data/models/stories260K.gguf"
if [ ! -f "$model" ]; then
  echo "demo: $model is absent; the demo needs the shared test model" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" --version
"$bin" inspect "$model" | head -40
"$bin" split "$model" --shards 2 --out "$out"
"$bin" verify "$out"
