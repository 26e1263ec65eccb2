#!/usr/bin/env python3
"""spotcheck_cost.py SPLIT_DIR — what spot checks cost (issue 13 item 3; docs/pipeline.md
"Spot checks").

SPLIT_DIR is a `shardswarm split` output (model.torrent + shard-K.gguf). One `shardswarm
node` per shard on 127.0.0.1 plus a replica of every shard (every shard is checkable; the
last one's check replays the sampler on the checker's logits; SW_BENCH_NO_LAST=1: no
replica of the last shard, as before it was checked), each cache holding a symlink to its shard (nothing is written to SPLIT_DIR), the
machine's cores shared by the core lease (the default). Then `generate --swarm` clients one
after another, alternating `--spot-check off` and the default rate (or SW_BENCH_RATE), the
same synthetic prompt, greedy: decode tok/s of each, the median per mode, the positions the
checkers recomputed and their verdicts (from the nodes' [SPOT] lines), and whether the
tokens are the same in every run. On one machine the checker computes on the same cores as
the route, so this is the cost where the checks compete with the work they check; a
checker on a machine of its own costs the route only the messages.

Environment: SW_BENCH_GEN (tokens per client, default 128), SW_BENCH_PROMPT (default 16),
SW_BENCH_RUNS (runs per mode, default 3), SW_BENCH_RATE (default: the node's, 1/256),
SW_BENCH_SAMPLING (the clients' sampling flags instead of greedy `--temp 0`, with a
--seed so both modes draw alike), SW_BENCH_REF_REPLICA=K (the replica of shard K computes with SW_KERNELS=ref: the [SPOT]
lines then give the rows' differences — for the last shard the logit gaps — between two
honest kernels; use SW_BENCH_RATE=1), SW_BENCH_LOGS=DIR (every node's log written there).
"""
import json
import os
import re
import statistics
import sys
import time
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
import harness  # noqa: E402

BIN = harness.BIN
N_GEN = int(os.environ.get("SW_BENCH_GEN") or 128)
PROMPT = int(os.environ.get("SW_BENCH_PROMPT") or 16)
RUNS = int(os.environ.get("SW_BENCH_RUNS") or 3)
RATE = os.environ.get("SW_BENCH_RATE") or ""
SAMPLING = os.environ.get("SW_BENCH_SAMPLING") or ""  # e.g. "--temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 7"


def log(*a):
    print(*a, flush=True)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    split = os.path.abspath(sys.argv[1])
    n = len([f for f in os.listdir(split) if re.match(r"shard-\d+\.gguf$", f)])
    with harness.Procs() as procs:
        root = harness.tmpdir("sw-spotcost-")
        cores = harness.tmpdir("sw-spotcost-cores-")
        nodes, boot = {}, None
        n_rep = n - 1 if os.environ.get("SW_BENCH_NO_LAST") else n
        plan = [("n%d" % k, k) for k in range(n)] + [("r%d" % k, k) for k in range(n_rep)]
        ref = os.environ.get("SW_BENCH_REF_REPLICA") or ""
        for name, k in plan:
            cache = os.path.join(root, name)
            os.makedirs(os.path.join(cache, "shards"))
            os.symlink(os.path.join(split, "shard-%d.gguf" % k), os.path.join(cache, "shards", "shard-%d.gguf" % k))
            args = [BIN, "node", "--model", os.path.join(split, "model.torrent"), "--cache", cache, "--listen", "0",
                    "--shard", str(k), "--cores-dir", cores, "--api", "0"]
            if boot:
                args += ["--bootstrap", "127.0.0.1:%d" % boot]
            env = {"SW_KERNELS": "ref"} if ref and name == "r" + ref else None
            p = procs.start(name, args, env=env)
            port = int(p.wait_for(r"listening on port (\d+)", timeout=120).group(1))
            p.api = int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=120).group(1))
            boot = boot or port
            nodes[name] = p
        for p in nodes.values():
            p.wait_for(r"shard \d+ loaded", timeout=300)
        log("swarm: %d shards, replicas of 0..%d, %s%s" % (n, n_rep - 1, split,
                                                           ", r%s on the reference kernels" % ref if ref else ""))
        res = {"off": [], "on": []}
        work = {"off": [], "on": []}  # compute seconds of all stages per generated token

        def compute_s():
            """(compute seconds of every stage, of which recomputing for spot checks)"""
            t = a = 0.0
            for p in nodes.values():
                for _ in range(100):  # the "pipeline" section appears once the engine is attached
                    with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % p.api, timeout=10) as r:
                        pl = json.loads(r.read()).get("pipeline")
                    if pl:
                        break
                    time.sleep(0.1)
                t += pl["compute_seconds"]
                a += pl["spot"]["audit_compute_seconds"]
            return t, a
        before = compute_s()
        audit_s = []
        toks = []
        seen = {name: 0 for name in nodes}
        for i in range(RUNS * 2):
            mode = "off" if i % 2 == 0 else "on"
            args = [BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model",
                    os.path.join(split, "model.torrent"), "--prompt-len", str(PROMPT), "-n", str(N_GEN)]
            args += SAMPLING.split() if SAMPLING else ["--temp", "0"]
            args += ["--ignore-eos", "--ids", "--json-timings", "--wait", "120", "--deadline-ms", "60000"]
            args += ["--spot-check", "off" if mode == "off" else (RATE or "1/256")]
            c = procs.start("client%d-%s" % (i, mode), args)
            while c.alive():
                c.p.wait(timeout=3600)
            out = c.output()
            if c.p.returncode != 0:
                sys.exit("client failed:\n" + out[-3000:])
            js = json.loads(re.findall(r"^\{.*\}$", out, re.M)[-1])
            ids = re.findall(r"\d+", re.sub(r"\{[^\n]*\}|\[[A-Z]+\][^\n]*", "", out))
            toks.append(ids)
            audits = []
            for name, p in nodes.items():
                o = p.output()
                # the last shard's lines: "(worst logit gap G, rel R)" (G in logits, R = G / (2 x the
                # row's largest |logit|)); the others': "(max abs diff D, rel err R)"
                for m in re.finditer(r"\[SPOT\] (?:warning: )?audit \w+ \(shard (\d+), positions (\d+)\.\.(\d+)[^)]*\): (\w+) "
                                     r"\((?:max abs diff|worst logit gap) ([0-9.e+-]+|inf), rel(?: err)? ([0-9.e+-]+|inf)\)",
                                     o[seen[name]:]):
                    audits.append((int(m.group(1)), int(m.group(3)) - int(m.group(2)), m.group(4), m.group(5), m.group(6)))
                seen[name] = len(o)
            res[mode].append(js["gen_tps"])
            time.sleep(1.5)  # the status JSON is refreshed about once a second
            after = compute_s()
            work[mode].append((after[0] - before[0]) / (N_GEN + PROMPT))
            if mode == "on":
                audit_s.append((after[1] - before[1], after[0] - before[0]))
            before = after
            pos = sum(a[1] for a in audits)
            worst = {}
            for a in audits:
                worst[a[0]] = max(worst.get(a[0], (0.0, 0.0)), (float(a[4]), float(a[3])))
            log("run %d %-3s: %.3f tok/s decode, first token %.0f ms; stages computed %.1f ms per position; %d verdicts, "
                "%d positions recomputed, %s; worst rel err (max abs diff or logit gap) per shard %s" %
                (i, mode, js["gen_tps"], js["ttft_ms"], work[mode][-1] * 1e3, len(audits), pos,
                 sorted(set(a[2] for a in audits)),
                 ", ".join("%d: %.3g (%.4g)" % (k, w[0], w[1]) for k, w in sorted(worst.items())) or "-"))
        if os.environ.get("SW_BENCH_LOGS"):  # every node's log, for a look by hand
            os.makedirs(os.environ["SW_BENCH_LOGS"], exist_ok=True)
            for name, p in nodes.items():
                with open(os.path.join(os.environ["SW_BENCH_LOGS"], name + ".log"), "w") as f:
                    f.write(p.output())
        same = all(t == toks[0] for t in toks)
        off, on = statistics.median(res["off"]), statistics.median(res["on"])
        woff, won = statistics.median(work["off"]), statistics.median(work["on"])
        a_all, t_all = sum(a for a, _ in audit_s), sum(t for _, t in audit_s)
        log("spot-check runs: recomputing took %.2f s of %.2f s of stage compute (%.1f %% on top of the route's %.2f s)" %
            (a_all, t_all, 100 * a_all / max(t_all - a_all, 1e-9), t_all - a_all))
        log("median decode: off %.3f tok/s, spot checks %s %.3f tok/s: x%.3f (%+.1f %%); compute of all stages per "
            "position: off %.1f ms, on %.1f ms (%+.1f %%); tokens identical in every run: %s" %
            (off, RATE or "1/256", on, on / off, (on / off - 1) * 100, woff * 1e3, won * 1e3, (won / woff - 1) * 100, same))


if __name__ == "__main__":
    main()
