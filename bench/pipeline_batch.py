#!/usr/bin/env python3
"""pipeline_batch.py SPLIT_DIR — concurrent sessions batched at the stages (issue 11, item 5).

SPLIT_DIR is a `shardswarm split` output (model.torrent + shard-K.gguf), e.g. the 7B-shape
llama2-7b Q4_0 in 8 shards. One `shardswarm node` per shard on 127.0.0.1 (each node's cache
holds a symlink to its shard; nothing is written to SPLIT_DIR), the machine's cores shared by
the core lease (the default). For each mode (coalescing on = the default, then `--coalesce
off`), 1, 2 and 4 `generate --swarm` clients at once (the same synthetic prompt, greedy):
total decode tok/s (the sum of the clients' rates), the ratio to one session, the batched
steps the stages ran, and whether every client's tokens equal the lone session's; then per
stage the decode steps by sessions carried (mean run time and the node's CPU time, from
/swarm/status `pipeline.decode_steps`) and the coalescing holds, and one token round split
into compute, holds and the rest (docs/pipeline.md, "Where a batched step's time goes").

Environment: SW_BENCH_GEN (tokens per client, default 24), SW_BENCH_PROMPT (prompt tokens,
default 8), SW_BENCH_MODES ("on,off"), SW_BENCH_COUNTS ("1,2,4"). A long prompt with the
default 5 s deadline (issue 11, item 1): SW_BENCH_PROMPT=128 SW_BENCH_GEN=4
SW_BENCH_COUNTS=1 SW_BENCH_MODES=on.
"""
import json
import os
import re
import shutil
import sys
import time
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
import harness  # noqa: E402

BIN = harness.BIN
N_GEN = int(os.environ.get("SW_BENCH_GEN") or 24)
PROMPT = int(os.environ.get("SW_BENCH_PROMPT") or 8)
MODES = (os.environ.get("SW_BENCH_MODES") or "on,off").split(",")
COUNTS = [int(x) for x in (os.environ.get("SW_BENCH_COUNTS") or "1,2,4").split(",")]


def log(*a):
    print(*a, flush=True)


def status(api):
    with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % api, timeout=5) as r:
        return json.loads(r.read())


def swarm(procs, split, n, mode, dirs):
    root = harness.tmpdir("sw-pbatch-")
    cores = harness.tmpdir("sw-pbatch-cores-")
    dirs += [root, cores]  # removed by main once the nodes are gone
    nodes, boot = [], None
    for k in range(n):
        cache = os.path.join(root, "n%d" % k)
        os.makedirs(os.path.join(cache, "shards"))
        os.symlink(os.path.join(split, "shard-%d.gguf" % k), os.path.join(cache, "shards", "shard-%d.gguf" % k))
        args = [BIN, "node", "--model", os.path.join(split, "model.torrent"), "--cache", cache, "--listen", "0",
                "--shard", str(k), "--api", "0", "--cores-dir", cores]
        if mode == "off":
            args += ["--coalesce", "off"]
        if boot:
            args += ["--bootstrap", "127.0.0.1:%d" % boot]
        p = procs.start("n%d-%s" % (k, mode), args)
        port = int(p.wait_for(r"listening on port (\d+)", timeout=120).group(1))
        api = int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=120).group(1))
        boot = boot or port
        nodes.append((p, api))
    for p, _ in nodes:
        p.wait_for(r"shard \d+ loaded", timeout=600)
    return nodes, boot


def run_clients(procs, split, boot, k, tag):
    cs = []
    for i in range(k):
        args = [BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model",
                os.path.join(split, "model.torrent"), "--tokenizer", os.path.join(split, "shard-0.gguf"),
                "--prompt-len", str(PROMPT), "-n", str(N_GEN), "--temp", "0", "--ignore-eos", "--ids", "--wait", "300",
                "--json-timings"]
        cs.append(procs.start("c%s-%d-%d" % (tag, k, i), args))
    res = []
    for c in cs:
        deadline = time.time() + 1800
        while c.alive() and time.time() < deadline:
            time.sleep(0.1)
        out = c.output()
        js = [l for l in out.splitlines() if l.startswith("{\"prompt_tokens\"")]
        if c.p.returncode != 0 or not js:
            harness.fail("%s failed:\n%s" % (c.name, out[-3000:]))
        ids = re.findall(r"\d+", re.sub(r"\{[^\n]*\}(\n|$)", "", re.sub(r"\[[A-Z]+\][^\n]*(\n|$)", "", out)))
        res.append((json.loads(js[-1]), ids))
    return res


def batched(nodes):
    b = e = h = 0
    for _, api in nodes:
        pl = status(api).get("pipeline", {})
        b += pl.get("batched_steps", 0)
        e += pl.get("batched_entries", 0)
        h += pl.get("coalesce_holds", 0)
    return b, e, h


def step_stats(nodes):
    """Per node: {sessions: [steps, run s, cpu s, wall s]}, coalesce_held_seconds."""
    out = []
    for _, api in nodes:
        pl = status(api).get("pipeline", {})
        d = {x["sessions"]: [x["steps"], x["seconds"], x["cpu_seconds"], x["wall_seconds"]]
             for x in pl.get("decode_steps", [])}
        out.append((d, pl.get("coalesce_held_seconds", 0.0)))
    return out


def step_report(s0, s1, k=0, total_tps=0.0):
    """Per stage: decode steps by sessions carried, mean run ms (CPU ms), and the held time;
    then one token round (every session one token further: k / total tok/s) against the sum
    over the stages of their mean step of all k sessions, and the holds per round (rounds =
    N_GEN - 1 decode steps); the rest is hops, sampling, the clients, and the steps of fewer
    sessions while the others prefilled."""
    tot = {}
    full = 0.0
    held_all = 0.0
    for st, ((d0, h0), (d1, h1)) in enumerate(zip(s0, s1)):
        parts = []
        for n in sorted(d1):
            a = d1[n]
            b = d0.get(n, [0, 0.0, 0.0, 0.0])
            c = a[0] - b[0]
            if c <= 0:
                continue
            run, cpu = (a[1] - b[1]) / c * 1e3, (a[2] - b[2]) / c * 1e3
            parts.append("%dx%d %.1f ms (cpu %.1f)" % (c, n, run, cpu))
            t = tot.setdefault(n, [0, 0.0, 0.0])
            t[0] += c
            t[1] += a[1] - b[1]
            t[2] += a[2] - b[2]
            if n == k:
                full += (a[1] - b[1]) / c
        held_all += h1 - h0
        log("    stage %d: %s; held %.2f s" % (st, ", ".join(parts) or "-", h1 - h0))
    if tot:
        log("    all stages: " + ", ".join("%d steps of %d: %.1f ms (cpu %.1f)" % (t[0], n, t[1] / t[0] * 1e3, t[2] / t[0] * 1e3)
                                    for n, t in sorted(tot.items())))
    if k and total_tps > 0 and N_GEN > 1:
        rounds = N_GEN - 1
        ring, comp, held = k / total_tps * 1e3, full * 1e3, held_all / rounds * 1e3
        log("    per token round: %.0f ms measured; the stages' mean %d-session steps add up to %.0f ms (%.0f %%), "
            "holds %.0f ms per round, the rest %.0f ms" % (ring, k, comp, 100 * comp / ring, held, ring - comp - held))


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: pipeline_batch.py SPLIT_DIR")
    split = os.path.abspath(sys.argv[1])
    n = len([f for f in os.listdir(split) if re.match(r"shard-\d+\.gguf$", f)])
    log("%s: %d shards; %d-token prompt, %d tokens per client; load %s" %
        (split, n, PROMPT, N_GEN, open("/proc/loadavg").read().split()[:3]))
    dirs = []
    try:
        for mode in MODES:
            run_mode(split, n, mode, dirs)
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def run_mode(split, n, mode, dirs):
    with harness.Procs() as procs:
        nodes, boot = swarm(procs, split, n, mode, dirs)
        run_clients(procs, split, boot, 1, mode + "warm")
        one_tps, ref = None, None
        for k in COUNTS:
            b0, s0 = batched(nodes), step_stats(nodes)
            t0 = time.time()
            res = run_clients(procs, split, boot, k, mode)
            b1, s1 = batched(nodes), step_stats(nodes)
            total = sum(r[0]["gen_tps"] for r in res)
            if k == 1:
                one_tps, ref = total, res[0][1]
                log("lone session's token ids (compare with `generate -m MODEL --prompt-len %d -n %d --temp 0 "
                    "--ignore-eos --ids`): %s" % (PROMPT, N_GEN, " ".join(ref)))
            same = all(r[1] == ref for r in res) if ref else None
            log("coalesce %s, %d session%s: total %.2f tok/s (%s), x%.2f vs 1; first token after %s s; batched "
                "steps %d (%.2f sessions each), holds %d; tokens %s; %.0f s; load %s" %
                (mode, k, "" if k == 1 else "s", total, " ".join("%.2f" % r[0]["gen_tps"] for r in res),
                 total / one_tps if one_tps else 0, " ".join("%.1f" % (r[0]["ttft_ms"] / 1e3) for r in res),
                 b1[0] - b0[0],
                 (b1[1] - b0[1]) / (b1[0] - b0[0]) if b1[0] > b0[0] else 0, b1[2] - b0[2],
                 "identical" if same else "DIFFER", time.time() - t0, open("/proc/loadavg").read().split()[:3]))
            step_report(s0, s1, k, total)


if __name__ == "__main__":
    main()
