#!/usr/bin/env python3
"""scale_bench.py — a swarm at real scale (issue 11, item 6): 8 nodes on 127.0.0.1 serving a
model of 7B shape (synth llama2-7b, Q4_0, 3.8 GB; BUILD/bench-models, generated once and
split into 8 shards once). A `node --seed-all` seeds every shard (no compute); nodes 0-3
start with their shard on disk, nodes 4-7 with an empty cache fetch theirs over BitTorrent.

  ready     seconds from starting the 8 nodes until /swarm/status says ready; per node the
            time to "shard K loaded" and its resident memory (VmRSS now, VmHWM peak)
  ttft      time to first token of a P-token prompt (default 512), swarm / single process
            (goal <= 1.1); single process: `generate --json-timings` prompt_ms
  decode    tokens/s of one session (32-token prompt, N tokens), swarm / single (goal >= 0.95)
  conc      2 and 4 concurrent sessions (8-token prompts, 24 tokens each, so that their
            decode periods overlap): total tokens/s (sum of the sessions' rates) / one session
            of the same shape

The nodes share the machine's T cores the nodes' default way (T threads each, the machine
core lease lets at most T compute at once), the single process has T threads. The machine
must hold the swarm (~4 GB mapped) and the single process (3.8 GB) at once.

Environment: SW_BENCH_THREADS (default: all CPUs), SW_BENCH_SCALE_MODEL (a llama2-7b-shaped
GGUF to use instead of generating one; read only), SW_BENCH_SCALE_PROMPT (default 512),
SW_BENCH_SCALE_GEN (default 16), SW_BENCH_SCALE_CONC_PROMPT / _CONC_GEN (8 / 24),
SW_BENCH_SCALE_SINGLE=0 (skip the single-process runs).
"""
import os
import re
import shutil
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import pipeline_bench as P  # noqa: E402  (single(), wait(), log; and its paths)

harness, S = P.harness, P.S
BIN, BUILD, THREADS = P.BIN, P.BUILD, P.THREADS
N_SHARDS = 8
PROMPT = int(os.environ.get("SW_BENCH_SCALE_PROMPT") or 512)
N_GEN = int(os.environ.get("SW_BENCH_SCALE_GEN") or 16)
CONC_PROMPT = int(os.environ.get("SW_BENCH_SCALE_CONC_PROMPT") or 8)
CONC_GEN = int(os.environ.get("SW_BENCH_SCALE_CONC_GEN") or 24)
DO_SINGLE = os.environ.get("SW_BENCH_SCALE_SINGLE", "1") != "0"
log = P.log


def model_and_split():
    """(model GGUF, split folder): generated into BUILD/bench-models once."""
    d = os.path.join(BUILD, "bench-models")
    os.makedirs(d, exist_ok=True)
    m = os.environ.get("SW_BENCH_SCALE_MODEL") or os.path.join(d, "llama2-7b-Q4_0.gguf")
    if not os.path.exists(m):
        log("generating %s (once; minutes) ..." % m)
        vocab = os.path.join(harness.SHARED, "vocab", "ggml-vocab-llama-spm.gguf")
        harness.run([BIN, "synth", "--preset", "llama2-7b", "--type", "Q4_0", "--seed", "1", "--vocab", vocab,
                     "-o", m + ".tmp"], timeout=3600, check_rc=0)
        os.rename(m + ".tmp", m)
    split = os.path.join(d, "%s-%d" % (os.path.basename(m)[:-5], N_SHARDS))
    if not os.path.exists(os.path.join(split, "model.torrent")):
        log("splitting %s into %d shards (once) ..." % (m, N_SHARDS))
        shutil.rmtree(split, ignore_errors=True)
        harness.run([BIN, "split", m, "--shards", str(N_SHARDS), "--out", split, "-q"], timeout=1800, check_rc=0)
    return m, split


class Split:
    """The split folder as swarm_it.Swarm wants a model: caches hold hard links to the shards
    (no 3.8 GB of copies; nodes never write a complete shard), copies across file systems."""

    def __init__(self, split, root):
        self.split, self.root, self.n = split, root, N_SHARDS
        self.torrent = os.path.join(split, "model.torrent")

    def cache(self, name, shards=()):
        c = os.path.join(self.root, name)
        os.makedirs(os.path.join(c, "shards"), exist_ok=True)
        for k in shards:
            src, dst = os.path.join(self.split, "shard-%d.gguf" % k), os.path.join(c, "shards", "shard-%d.gguf" % k)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        return c


def mem_mb(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024.0
    except OSError:
        pass
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def client(sw, name, prompt_len, n):
    args = [BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % sw.boot, "--model", sw.model.torrent,
            "--prompt-len", str(prompt_len), "-n", str(n), "--temp", "0", "--ignore-eos", "--ids", "--wait", "300",
            "--json-timings"]
    return sw.procs.start(name, args)


def main():
    if not P.can_run():
        return
    model, split = model_and_split()
    log("scale bench: %s in %d shards, %d threads, prompt %d tokens, %d generated per session"
        % (os.path.basename(model), N_SHARDS, THREADS, PROMPT, N_GEN))
    root = harness.tmpdir("sw-scale-")
    cores = harness.tmpdir("sw-scale-cores-")
    extra = ["--threads", str(THREADS), "--machine-cores", str(THREADS), "--cores-dir", cores,
             "--status-interval", "5000"]
    res = {}
    try:
        with harness.Procs() as procs:
            sw = S.Swarm(procs, Split(split, root))
            if DO_SINGLE:
                r = P.single(model, THREADS, prompt_len=32, n=N_GEN)
                res["dec_single_before"] = r["gen_tps"]
                log("single (before the swarm): %.3f tok/s" % r["gen_tps"])
            seeder = sw.start("seeder", seed_all=True, extra=extra)
            seeder.proc.wait_for(r"seeding all", timeout=1800)  # its shards hashed (3.8 GB)
            t0 = time.time()
            for k in range(N_SHARDS):
                sw.start("n%d" % k, shard=k, cache_shards=[k] if k < N_SHARDS // 2 else [], extra=extra, wait=False)
            for n in sw.nodes.values():
                n.resolve(timeout=600)
            loaded = {}
            deadline = time.time() + 1800
            first = sw.nodes["n0"]
            t_ready = None
            while time.time() < deadline and t_ready is None:
                for k in range(N_SHARDS):
                    name = "n%d" % k
                    if name not in loaded and re.search(r"shard %d loaded" % k, sw.nodes[name].proc.output()):
                        loaded[name] = time.time() - t0
                    if not sw.nodes[name].proc.alive():
                        harness.fail("%s exited:\n%s" % (name, sw.nodes[name].proc.output()[-3000:]))
                if len(loaded) == N_SHARDS and first.ready():
                    t_ready = time.time() - t0
                time.sleep(0.1)
            if t_ready is None:
                harness.fail("the swarm was not ready within 30 minutes")
            log("ready after %.1f s (nodes 0-3 load from disk, 4-7 fetch from the seeder)" % t_ready)
            res["ready"] = t_ready
            res["loaded"] = loaded
            # time to first token of the long prompt, then decode, then concurrency
            P.wait(client(sw, "warm", 8, 2), timeout=1800)
            r = P.wait(client(sw, "ttft", PROMPT, 1), timeout=3600)
            res["ttft_swarm"] = r["ttft_ms"]
            log("swarm: %d-token prompt, first token after %.0f ms" % (PROMPT, r["ttft_ms"]))
            r = P.wait(client(sw, "one", 32, N_GEN), timeout=3600)
            res["dec_swarm"] = r["gen_tps"]
            log("swarm: 1 session %.3f tok/s" % r["gen_tps"])
            # Concurrency: short prompts, so that the sessions' decode periods overlap (a 32-token
            # prefill at 7B takes about as long as 16 decoded tokens here; the sessions' rates
            # would then be measured mostly while the others prefill, which is not batching).
            r = P.wait(client(sw, "one-c", CONC_PROMPT, CONC_GEN), timeout=3600)
            res["conc1"] = r["gen_tps"]
            log("swarm: 1 session (short prompt) %.3f tok/s" % r["gen_tps"])
            for c in (2, 4):
                cs = [client(sw, "c%d-%d" % (c, i), CONC_PROMPT, CONC_GEN) for i in range(c)]
                rs = [P.wait(x, timeout=3600) for x in cs]
                res["conc%d" % c] = sum(x["gen_tps"] for x in rs)
                log("swarm: %d concurrent sessions %.3f tok/s in total (%s)"
                    % (c, res["conc%d" % c], " ".join("%.3f" % x["gen_tps"] for x in rs)))
            res["mem"] = {name: mem_mb(n.proc.pid) for name, n in sw.nodes.items()}
            if DO_SINGLE:
                # the swarm idles meanwhile (its memory stays mapped, as a user's would)
                r = P.single(model, THREADS, prompt_len=PROMPT, n=1)
                res["ttft_single"] = r["prompt_ms"]
                res["rss_single"] = r.get("peak_rss", 0) / 1048576.0
                log("single: %d-token prompt in %.0f ms" % (PROMPT, r["prompt_ms"]))
                r = P.single(model, THREADS, prompt_len=32, n=N_GEN)
                res["dec_single_after"] = r["gen_tps"]
                log("single: %.3f tok/s" % r["gen_tps"])
                # decode measured before and after the swarm's runs: the machine drifts
                res["dec_single"] = (res["dec_single_before"] + r["gen_tps"]) / 2
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(cores, ignore_errors=True)

    def ratio(a, b):
        return "%.2f" % (a / b) if a and b else "-"
    log("")
    log("| node | shard | start | loaded after | RSS now | RSS peak |")
    log("|---|---|---|---|---|---|")
    for name in ["seeder"] + ["n%d" % k for k in range(N_SHARDS)]:
        rss, hwm = res["mem"].get(name, (0, 0))
        k = "all (seed)" if name == "seeder" else name[1:]
        how = "on disk" if name == "seeder" or int(name[1:]) < N_SHARDS // 2 else "fetched"
        t = res["loaded"].get(name)
        log("| %s | %s | %s | %s | %.0f MB | %.0f MB |" % (name, k, how, "%.1f s" % t if t else "-", rss, hwm))
    log("")
    log("| %s, %d nodes, %d threads | swarm | single process | swarm / single | goal |"
        % (os.path.basename(model), N_SHARDS, THREADS))
    log("|---|---|---|---|---|")
    log("| time to ready | %.1f s | | | |" % res["ready"])
    log("| first token, %d-token prompt | %.1f s | %s | %s | <= 1.1 |"
        % (PROMPT, res["ttft_swarm"] / 1e3, "%.1f s" % (res["ttft_single"] / 1e3) if "ttft_single" in res else "-",
           ratio(res["ttft_swarm"], res.get("ttft_single"))))
    log("| decode, 1 session | %.3f tok/s | %s | %s | >= 0.95 |"
        % (res["dec_swarm"], "%.3f tok/s" % res["dec_single"] if "dec_single" in res else "-",
           ratio(res["dec_swarm"], res.get("dec_single"))))
    if "dec_single" in res:
        log("(single-process decode: %.3f tok/s before the swarm ran, %.3f after; the mean is used)"
            % (res["dec_single_before"], res["dec_single_after"]))
    log("| 1 session, %d-token prompt, %d tokens (the base of the next rows) | %.3f tok/s | | | |"
        % (CONC_PROMPT, CONC_GEN, res["conc1"]))
    for c in (2, 4):
        log("| %d concurrent sessions, total / 1 session | %.3f tok/s | | x%s | %s |"
            % (c, res["conc%d" % c], ratio(res["conc%d" % c], res["conc1"]), ">= 1.6" if c == 2 else ">= 2.5"))
    if "rss_single" in res:
        log("| resident memory | %.0f MB (8 stage nodes, VmHWM) | %.0f MB (peak) | | |"
            % (sum(v[1] for n, v in res["mem"].items() if n != "seeder"), res["rss_single"]))


if __name__ == "__main__":
    main()
