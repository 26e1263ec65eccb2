#!/usr/bin/env python3
"""pipeline_prefix.py SPLIT_DIR — the stages' prefix cache (issue 15, item 1): time to first
token of a chat's second turn against the first.

SPLIT_DIR is a `shardswarm split` output (model.torrent + shard-K.gguf), e.g. the TinyLlama
shape in Q4_0 in 3 shards. One `shardswarm node` per shard on 127.0.0.1 (default options: the
prefix cache on, 8 entries). A `generate --swarm` client with a fixed --cache folder (so the
same entry identity every turn) runs, per chat:

  turn 1: a HISTORY-token prompt (random ids), GEN greedy tokens;
  turn 2: turn 1's prompt + its GEN tokens + 24 new ids, GEN tokens — the stages hold turn
          1's KV and compute only the rest;
  turn 2 again with --no-prefix-cache: the whole prompt computed (the reference tokens).

It prints each turn's time to first token, the positions reused, the ratio turn 2 / turn 1
and whether turn 2's tokens equal those without the cache.

Environment: SW_BENCH_HISTORY (default 1000), SW_BENCH_GEN (default 32), SW_BENCH_CHATS
(default 3), SW_BENCH_THREADS (node --threads; default: the node's).
"""
import json
import os
import random
import re
import statistics
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
import harness  # noqa: E402

BIN = harness.BIN
HISTORY = int(os.environ.get("SW_BENCH_HISTORY") or 1000)
N_GEN = int(os.environ.get("SW_BENCH_GEN") or 32)
CHATS = int(os.environ.get("SW_BENCH_CHATS") or 3)
THREADS = os.environ.get("SW_BENCH_THREADS")


def log(*a):
    print(*a, flush=True)


def swarm(procs, split, n):
    root = harness.tmpdir("sw-pprefix-")
    boot = None
    nodes = []
    for k in range(n):
        cache = os.path.join(root, "n%d" % k)
        os.makedirs(os.path.join(cache, "shards"))
        os.symlink(os.path.join(split, "shard-%d.gguf" % k), os.path.join(cache, "shards", "shard-%d.gguf" % k))
        args = [BIN, "node", "--model", os.path.join(split, "model.torrent"), "--cache", cache, "--listen", "0",
                "--shard", str(k)]
        if THREADS:
            args += ["--threads", THREADS]
        if boot:
            args += ["--bootstrap", "127.0.0.1:%d" % boot]
        p = procs.start("n%d" % k, args)
        port = int(p.wait_for(r"listening on port (\d+)", timeout=120).group(1))
        boot = boot or port
        nodes.append(p)
    for p in nodes:
        p.wait_for(r"shard \d+ loaded", timeout=600)
    return boot, root


def turn(procs, split, boot, cache, ids, tag, no_cache=False):
    args = [BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model",
            os.path.join(split, "model.torrent"), "--cache", cache, "--prompt-ids", " ".join(map(str, ids)),
            "-n", str(N_GEN), "--temp", "0", "--ignore-eos", "--ids", "--no-echo", "--wait", "300", "--json-timings",
            "--deadline-ms", "60000"]
    if no_cache:
        args.append("--no-prefix-cache")
    c = procs.start(tag, args)
    deadline = time.time() + 1800
    while c.alive() and time.time() < deadline:
        time.sleep(0.05)
    out = c.output()
    js = [l for l in out.splitlines() if l.startswith("{\"prompt_tokens\"")]
    if c.p.returncode != 0 or not js:
        harness.fail("%s failed:\n%s" % (tag, out[-3000:]))
    body = re.sub(r"\{[^\n]*\}(\n|$)", "", re.sub(r"\[[A-Z]+\][^\n]*(\n|$)", "", out))
    return json.loads(js[-1]), [int(x) for x in re.findall(r"\d+", body)]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: pipeline_prefix.py SPLIT_DIR")
    split = os.path.abspath(sys.argv[1])
    n = len([f for f in os.listdir(split) if re.match(r"shard-\d+\.gguf$", f)])
    log("%s: %d shards; history %d tokens, %d generated per turn, %d chats; load %s" %
        (split, n, HISTORY, N_GEN, CHATS, open("/proc/loadavg").read().split()[:3]))
    ratios = []
    with harness.Procs() as procs:
        boot, root = swarm(procs, split, n)
        cache = os.path.join(root, "client")
        os.makedirs(cache)
        turn(procs, split, boot, cache, [1, 2, 3, 4], "warm", no_cache=True)
        for c in range(CHATS):
            rnd = random.Random(c)
            p1 = [1] + [rnd.randrange(100, 31000) for _ in range(HISTORY - 1)]
            t1, g1 = turn(procs, split, boot, cache, p1, "c%d-t1" % c)
            p2 = p1 + g1 + [rnd.randrange(100, 31000) for _ in range(24)]
            t2, g2 = turn(procs, split, boot, cache, p2, "c%d-t2" % c)
            t2n, g2n = turn(procs, split, boot, cache, p2, "c%d-t2-nocache" % c, no_cache=True)
            r = t2["ttft_ms"] / t1["ttft_ms"]
            ratios.append(r)
            log("chat %d: turn 1 (%d tokens) first token %.0f ms (reused %d); turn 2 (%d tokens) %.0f ms (reused %d) "
                "-> x%.3f; turn 2 without the cache %.0f ms (x%.3f of it); tokens %s; load %s" %
                (c, len(p1), t1["ttft_ms"], t1["prefix_reused"], len(p2), t2["ttft_ms"], t2["prefix_reused"], r,
                 t2n["ttft_ms"], t2["ttft_ms"] / t2n["ttft_ms"], "identical" if g2 == g2n else "DIFFER",
                 open("/proc/loadavg").read().split()[:3]))
            if g2 != g2n:
                harness.fail("turn 2 tokens differ with and without the prefix cache:\n%s\n%s" % (g2, g2n))
    log("median turn-2 / turn-1 time to first token: x%.3f (goal <= 0.2)" % statistics.median(ratios))


if __name__ == "__main__":
    main()
