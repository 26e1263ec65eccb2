#!/bin/sh
# demo.sh BUILD — the main job: a whole swarm on this machine, end to end.
# A model is cut into layer shards and one torrent; a seeder and three nodes start on
# 127.0.0.1 (two of them without their shard: they fetch it over BitTorrent); every node
# reports the swarm ready; a light client generates a story across the swarm, and the
# tokens are checked against single-process generation. Every process started here is
# stopped by PID on exit, and every wait is bounded.
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
work=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
if [ -t 1 ]; then b=$(printf '\033[1m'); n=$(printf '\033[0m'); else b=; n=; fi
step() { printf '\n%s== %s%s\n' "$b" "$*" "$n"; }

# wait_log FILE REGEX SECONDS — until FILE has a line matching REGEX (extended), or fail.
wait_log() {
  i=0
  while ! grep -Eq "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt $(($3 * 10)) ]; then
      echo "demo: '$2' not seen in $1 within $3 s; its last lines:" >&2
      tail -20 "$1" >&2
      exit 1
    fi
    sleep 0.1
  done
}

# start NAME ARGS... — a node in the background, its log in $work/NAME.log.
start() {
  name=$1; shift
  "$bin" node "$@" >"$work/$name.log" 2>&1 &
  pids="$pids $!"
}

"$bin" --version

step "1. the model: a real tiny llama (stories260K)"
"$bin" inspect "$model" | sed -n '1,3p;/^bytes per layer/,$p'

step "2. split into 3 layer-range shards + one torrent, signed for an owner key"
"$bin" keygen -o "$work/owner.key" 2>/dev/null
"$bin" split "$model" --shards 3 --out "$work/model" --owner-key "$work/owner.key"
"$bin" verify "$work/model"
torrent="$work/model/model.torrent"

step "3. a seeder holding every shard, and three nodes; only node-0 has its shard on disk"
mkdir -p "$work/seed/shards" "$work/n0/shards" "$work/n1" "$work/n2"
cp "$work"/model/shard-*.gguf "$work/seed/shards/"
cp "$work/model/shard-0.gguf" "$work/n0/shards/"
start seed --model "$torrent" --cache "$work/seed" --seed-all --listen 0
wait_log "$work/seed.log" 'listening on port [0-9]+' 30
boot=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/seed.log" | head -1)
echo "seeder listening on 127.0.0.1:$boot"
start n0 --model "$torrent" --cache "$work/n0" --shard 0 --bootstrap "127.0.0.1:$boot" --listen 0 --status-interval 1000
start n1 --model "$torrent" --cache "$work/n1" --shard 1 --bootstrap "127.0.0.1:$boot" --listen 0 --status-interval 1000
start n2 --model "$torrent" --cache "$work/n2" --shard 2 --bootstrap "127.0.0.1:$boot" --listen 0 --api 0 --status-interval 1000

step "4. node-1 and node-2 fetch their shards from the swarm; every node reports ready"
for nd in n0 n1 n2; do wait_log "$work/$nd.log" '\[READY\]' 60; done
for nd in n0 n1 n2; do
  echo "--- $nd"
  grep -E '\[SHARD\]|\[READY\]' "$work/$nd.log" | head -4
done
wait_log "$work/n2.log" 'http://127\.0\.0\.1:[0-9]+/swarm/status' 10
api=$(sed -n 's|.*\(http://127\.0\.0\.1:[0-9]*\)/swarm/status.*|\1|p' "$work/n2.log" | head -1)
"$bin" status --api "$api"

step "5. generate across the swarm (greedy) and compare with a single process"
"$bin" generate -m "$model" -p "Once upon a time" -n 60 --temp 0 --ids --ignore-eos -t 1 \
  >"$work/ref.ids" 2>/dev/null
# a light client: no shard, no tokenizer file (it takes the tokenizer from a node's
# verified shard header)
"$bin" generate --swarm --bootstrap "127.0.0.1:$boot" --model "$torrent" \
  -p "Once upon a time" -n 60 --temp 0 --ignore-eos --cache "$work/client" 2>"$work/client.log"
echo
grep -E 'tokenizer from' "$work/client.log" | head -1
"$bin" generate --swarm --bootstrap "127.0.0.1:$boot" --model "$torrent" \
  -p "Once upon a time" -n 60 --temp 0 --ignore-eos --ids \
  --cache "$work/client" >"$work/swarm.ids" 2>>"$work/client.log"
if cmp -s "$work/ref.ids" "$work/swarm.ids"; then
  echo "the swarm's 60 tokens are identical to single-process generation"
else
  echo "demo: the swarm's tokens differ from single-process generation" >&2
  echo " single: $(cat "$work/ref.ids")" >&2
  echo " swarm:  $(cat "$work/swarm.ids")" >&2
  exit 1
fi

step "6. the same swarm behind the OpenAI-compatible API of node n2"
python3 - "$api" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/completions", method="POST",
                             data=json.dumps({"prompt": "Once upon a time", "max_tokens": 40,
                                              "temperature": 0}).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as r:
    out = json.loads(r.read())
print("POST /v1/completions ->", json.dumps(out["choices"][0]["text"]))
print("usage:", out["usage"])
PY
echo "dashboard: $api/  (metrics: $api/metrics)"
echo
echo "demo: ok"
