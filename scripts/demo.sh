#!/bin/sh
# demo.sh BUILD — the main job: the most complete end-to-end run that exists today.
# Today: a model is inspected, cut into byte-balanced layer shards (each a valid GGUF),
# verified, damaged in three different ways, diagnosed by `verify`, and repaired.
set -eu
build=${1:-build}
bin="$build/shardswarm"
here=$(cd "$(dirname "$0")/.." && pwd)
data=${SW_SHARED_DATA:-$here/../shared/data}
model="$data/models/stories260K.gguf"
if [ ! -f "$model" ]; then
  echo "demo: $model is absent; the demo needs the shared test model (set SW_SHARED_DATA)" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ -t 1 ]; then b=$(printf '\033[1m'); n=$(printf '\033[0m'); else b=; n=; fi
step() { printf '\n%s== %s%s\n' "$b" "$*" "$n"; }

"$bin" --version

step "1. inspect: what the model holds (header, model, bytes per layer)"
"$bin" inspect "$model" | sed -n '1,3p;/^bytes per layer/,$p'

step "2. split into 3 layer-range shards, balanced by bytes (embedding on the first, output on the last)"
"$bin" split "$model" --shards 3 --out "$out/shards"

step "3. each shard is a complete GGUF file: full metadata + tokenizer + its layers"
for f in "$out"/shards/shard-*.gguf; do
  "$bin" inspect "$f" | sed -n '/^shard /p;/^tensors /p;/^total /p'
done

step "4. verify: every shard present, right size, SHA-256 matches"
"$bin" verify "$out/shards"

step "5. break it: delete shard 0, truncate shard 1, flip one byte of shard 2"
cp -r "$out/shards" "$out/good"
rm "$out/shards/shard-0.gguf"
head -c 4096 "$out/good/shard-1.gguf" > "$out/shards/shard-1.gguf"
printf '\377' | dd of="$out/shards/shard-2.gguf" bs=1 seek=20000 conv=notrunc 2>/dev/null
rc=0
"$bin" verify "$out/shards" || rc=$?
echo "(verify exit status $rc: 1 means some shard needs attention)"
[ "$rc" = 1 ]

step "6. repair by splitting again: same model, same bytes, same SHA-256"
"$bin" split "$model" --shards 3 --out "$out/shards" --quiet
"$bin" verify "$out/shards"
cmp "$out/shards/model.json" "$out/good/model.json" && echo "manifest identical to the first split"

step "7. a malformed file is refused with the field and byte offset"
rc=0
"$bin" inspect "$here/tests/gguf/malformed/overlapping_tensors.gguf" 2>&1 || rc=$?
[ "$rc" = 1 ]
echo
echo "demo: ok"
