#!/usr/bin/env python3
"""pipeline_it.py CASE — pipeline sessions across real node processes on 127.0.0.1.

Nodes are `shardswarm node` processes (the pipeline engine is attached to every node) and
the client is `shardswarm generate --swarm` (a light client with no shard). The reference
is the single-process `shardswarm generate` on the whole model.

Cases (issue 7, item 5):
  equal       4 nodes on a 4-way split of stories260K: 200 greedy tokens identical to
              `shardswarm generate`, logits within 1e-4 (f32 on the wire); a
              `node --client` joins and sees the swarm ready
  kill        a replica of shard 2; kill -9 of the node serving shard 2 mid-generation:
              the same 200 tokens, exit 0, no error
  concurrent  8 clients at once with different prompts: each equals single-process output
  cancel      SIGINT to the client mid-generation: a clean stop with a prefix of the tokens
  refusal     shard 1's first node has no room for KV: the session goes through its replica;
              without a replica the client fails with a message naming shard 1
  leave       a replica of shard 2; SIGTERM to the node serving shard 2 mid-generation: it
              hands the session over (ERROR to the entry, which fails over) and exits 0;
              the client gets the same 200 tokens
  text        a text prompt with no --tokenizer: the client finds a shard of the model in
              --cache DIR/shards and uses its tokenizer (same ids as single-process); with
              neither, the tokenizer comes from the swarm (same ids)
  longstep    shard 1's node takes 1.5 s per step (--step-delay-us), the client's deadline is
              1 s: the steps are work, not stalls (PROGRESS), no route is rebuilt, the tokens
              equal single-process
  stop        a replica of shard 2; SIGSTOP of the node serving shard 2 mid-generation (its
              connection stays up): the entry sees the stall within its deadline (1.5 s)
              and the replica finishes with the same 200 tokens
  promptlen   `generate --swarm --prompt-len 24` builds the prompt of `generate --prompt-len
              24` (the model's vocabulary and BOS): the same tokens
  tmpdir      a light client (no --cache) leaves no sw-client-* folder behind: after a normal
              end, SIGINT, SIGTERM mid-generation, and a failure (no swarm within --wait)
  busy        shard 1's only node takes one session (--max-sessions 1) and a client holds it:
              POST /v1/completions to another node answers 429 swarm_busy with Retry-After,
              naming shard 1; once the client is done the same request answers 200
  swap        a replica of shard 2; an owner-signed LOAD_SHARD moves the node serving shard 2
              to shard 3 mid-generation: the node releases its stage (freed only once no
              pipeline job runs on it), the session fails over, the same 200 tokens
"""
import os
import re
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm_it as S  # noqa: E402
from swarm_it import check, fail, harness  # noqa: E402

N = 4
N_GEN = 200
PROMPT = "1 403 407 261 378 285 266 350 432 306 286"  # BOS + a story opening (stories260K has 512 tokens)


class PNode:
    def __init__(self, proc, port, api=None):
        self.proc, self.port, self.api = proc, port, api


def start_node(procs, model, name, shard, boot=None, extra=(), api=False):
    cache = model.cache(name, [shard] if shard >= 0 else [])
    args = [harness.BIN, "node", "--model", model.torrent, "--cache", cache, "--listen", "0", "--threads", "1"]
    args += ["--shard", str(shard)] if shard >= 0 else ["--client"]
    args += list(extra)
    if api:
        args += ["--api", "0"]
    if boot:
        args += ["--bootstrap", "127.0.0.1:%d" % boot]
    p = procs.start(name, args)
    port = int(p.wait_for(r"listening on port (\d+)", timeout=30).group(1))
    a = int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=30).group(1)) if api else None
    return PNode(p, port, a)


def start_swarm(procs, model, replicas=(), extra_for=None, first_extra=(), api=False):
    nodes = {}
    extra_for = extra_for or {}
    nodes["n0"] = start_node(procs, model, "n0", 0, extra=list(first_extra) + list(extra_for.get("n0", ())), api=api)
    boot = nodes["n0"].port
    for k in range(1, N):
        nodes["n%d" % k] = start_node(procs, model, "n%d" % k, k, boot, list(first_extra) + list(extra_for.get("n%d" % k, ())),
                                      api=api)
    for k in replicas:
        name = "r%d" % k
        nodes[name] = start_node(procs, model, name, k, boot, list(first_extra) + list(extra_for.get(name, ())), api=api)
    # every node loaded (the client waits for a complete route itself)
    for name, n in nodes.items():
        n.proc.wait_for(r"shard \d+ loaded", timeout=60)
    return nodes, boot


def reference(prompt, n, logits_path=None):
    args = [harness.BIN, "generate", "-m", harness.shared_model(), "--prompt-ids", prompt, "-n", str(n), "--temp", "0",
            "--ids", "--ignore-eos", "-t", "1"]
    if logits_path:
        args += ["--logits-out", logits_path]
    r = harness.run(args, timeout=120, check_rc=0)
    return r.stdout.split()


def client(procs, model, boot, name, prompt, n, extra=()):
    args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model", model.torrent,
            "--prompt-ids", prompt, "-n", str(n), "--temp", "0", "--ids", "--ignore-eos", "--wait", "60",
            "--json-timings"] + list(extra)
    return procs.start(name, args)


def wait_exit(p, timeout=120):
    deadline = time.time() + timeout
    while p.alive():
        if time.time() > deadline:
            fail("%s did not finish within %ss:\n%s" % (p.name if hasattr(p, "name") else "client", timeout, p.output()[-3000:]))
        time.sleep(0.05)
    return p.p.returncode if hasattr(p, "p") else p.proc.returncode


def client_ids(p):
    """The ids the client printed on stdout. Its log lines share the file and may cut the
    ids line anywhere, so every "[TAG] ..." line and the JSON timings line are removed."""
    out = p.output()
    out = re.sub(r"\[[A-Z]+\][^\n]*(\n|$)", "", out)
    out = re.sub(r"\{[^\n]*\}(\n|$)", "", out)
    return re.findall(r"\d+", out)


def read_f32(path):
    with open(path, "rb") as f:
        b = f.read()
    return struct.unpack("<%df" % (len(b) // 4), b)


def swarm_vs_single(procs, model, boot, prompt, n_gen, tag):
    """`generate --swarm` of prompt against single-process `generate` on model.root's
    synth.gguf, both greedy with their logits written out: (tokens, logits of each). Fails
    when the client fails or the tokens differ."""
    d = harness.tmpdir("sw-%s-lg-" % tag)
    ref_lg, got_lg = os.path.join(d, "ref.f32"), os.path.join(d, "got.f32")
    r = harness.run([harness.BIN, "generate", "-m", os.path.join(model.root, "synth.gguf"), "--prompt-ids", prompt,
                     "-n", str(n_gen), "--temp", "0", "--ids", "--ignore-eos", "-t", "1", "--logits-out", ref_lg],
                    timeout=120, check_rc=0)
    ref = r.stdout.split()
    c = client(procs, model, boot, "client", prompt, n_gen, ["--logits-out", got_lg])
    rc = wait_exit(c)
    if rc != 0:
        fail("client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
    got = client_ids(c)
    if got != ref:
        fail("tokens differ from single-process generate:\n ref %s\n got %s" % (ref[:40], got[:40]))
    return got, read_f32(ref_lg), read_f32(got_lg)


def serving_shard2(nodes, c, timeout=60):
    """Which of n2 / r2 (a replica of shard 2) opened the client's session: its name."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for name in ("n2", "r2"):
            if re.search(r"stage 2 of 4 opened", nodes[name].proc.output()):
                return name
        time.sleep(0.02)
    fail("no shard-2 node opened the session:\n%s" % c.output()[-2000:])


def stories():
    return S.Model(harness.tmpdir("sw-pipe-"), N, source=harness.shared_model())


def case_equal():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m)
        # a `node --client` (no shard, no fetching) joins and sees the swarm ready
        light = start_node(procs, m, "light", -1, boot)
        light.proc.wait_for(r"\[READY\] swarm ready", timeout=30)
        d = harness.tmpdir("sw-pipe-lg-")
        ref_lg, got_lg = os.path.join(d, "ref.f32"), os.path.join(d, "got.f32")
        ref = reference(PROMPT, N_GEN, ref_lg)
        c = client(procs, m, boot, "client", PROMPT, N_GEN, ["--logits-out", got_lg])
        rc = wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = client_ids(c)
        check(len(got) == N_GEN, "client printed %d tokens:\n%s" % (len(got), c.output()[-2000:]))
        check(got == ref, "tokens differ from single-process generate:\n ref %s\n got %s" % (ref[:40], got[:40]))
        a, b = read_f32(ref_lg), read_f32(got_lg)
        check(len(a) == len(b), "logits: %d vs %d floats" % (len(a), len(b)))
        worst = max(abs(x - y) for x, y in zip(a, b))
        check(worst <= 1e-4, "logits differ by %g" % worst)
        print("equal: %d tokens identical, worst logit difference %g" % (N_GEN, worst), file=sys.stderr)


def case_kill():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        # slow stages (5 ms per step) so that the kill lands in the middle of generation
        nodes, boot = start_swarm(procs, m, replicas=[2], first_extra=["--step-delay-us", "5000"])
        ref = reference(PROMPT, N_GEN)
        c = client(procs, m, boot, "client", PROMPT, N_GEN)
        # which shard-2 node serves the session?
        victim = serving_shard2(nodes, c)
        # let some tokens through, then kill -9
        deadline = time.time() + 60
        while len(" ".join(client_ids(c)).split()) < 40 and time.time() < deadline and c.alive():
            time.sleep(0.01)
        n_before = len(client_ids(c))
        check(c.alive() and n_before < N_GEN, "generation ended before the kill (%d tokens)" % n_before)
        t_kill = time.time()
        nodes[victim].proc.kill9()
        rc = wait_exit(c)
        check(rc == 0, "client failed after the kill (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = client_ids(c)
        check(got == ref, "tokens differ after failover:\n ref %s\n got %s" % (ref[:40], got[:40]))
        survivor = "r2" if victim == "n2" else "n2"
        check(re.search(r"stage 2 of 4 opened", nodes[survivor].proc.output()) is not None,
              "the replica never took over")
        print("kill: %s killed after %d tokens; %d identical tokens; finished %.2fs after the kill" %
              (victim, n_before, len(got), time.time() - t_kill), file=sys.stderr)


def case_concurrent():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m)
        prompts = ["1 %d %d %d" % (300 + 7 * i, 400 + 3 * i, 270 + i) for i in range(8)]
        refs = [reference(p, 64) for p in prompts]
        cs = [client(procs, m, boot, "c%d" % i, prompts[i], 64) for i in range(8)]
        for i, c in enumerate(cs):
            rc = wait_exit(c)
            check(rc == 0, "client %d failed:\n%s" % (i, c.output()[-2000:]))
            check(client_ids(c) == refs[i], "client %d: tokens differ from single-process" % i)
        print("concurrent: 8 clients, each identical to single-process", file=sys.stderr)


def case_refusal():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, replicas=[1], extra_for={"n1": ["--max-kv-kb", "1"]})
        ref = reference(PROMPT, 40)
        # make sure n1 is the one tried first at least sometimes: either way the result is the same
        c = client(procs, m, boot, "client", PROMPT, 40)
        rc = wait_exit(c)
        check(rc == 0, "client failed:\n%s" % c.output()[-3000:])
        check(client_ids(c) == ref, "tokens differ")
        refused = "refused stage 1" in nodes["n1"].proc.output()
        print("refusal: with a replica: %s" % ("n1 refused, the replica served" if refused else
                                                  "the replica was picked first (no refusal needed)"), file=sys.stderr)
        procs.stop_all()
    with harness.Procs() as procs:
        nodes, boot = start_swarm(procs, m, extra_for={"n1": ["--max-kv-kb", "1"]})
        c = client(procs, m, boot, "client", PROMPT, 40)
        rc = wait_exit(c)
        out = c.output()
        check(rc == 1, "client should fail (rc %s):\n%s" % (rc, out[-2000:]))
        check("shard 1" in out and "KV" in out, "the error does not name shard 1 / KV:\n%s" % out[-2000:])
        print("refusal: %s" % [l for l in out.splitlines() if "shard 1" in l][-1], file=sys.stderr)


def case_cancel():
    """Ctrl-C in the client cancels the session (through the thread-safe entry point):
    the client stops at once with the tokens so far, a prefix of the reference."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, first_extra=["--step-delay-us", "5000"])
        ref = reference(PROMPT, N_GEN)
        c = client(procs, m, boot, "client", PROMPT, N_GEN)
        deadline = time.time() + 60
        while len(client_ids(c)) < 20 and time.time() < deadline and c.alive():
            time.sleep(0.01)
        c.signal(signal.SIGINT)
        rc = wait_exit(c, 30)
        got = client_ids(c)
        check(rc == 0, "client rc %s after SIGINT:\n%s" % (rc, c.output()[-2000:]))
        check(20 <= len(got) < N_GEN and got == ref[:len(got)], "cancelled output: %d tokens" % len(got))
        print("cancel: stopped after %d tokens" % len(got), file=sys.stderr)


def takeover(action, after):
    """A replica of shard 2; `action(nodes, victim, model)` hits the node serving shard 2
    after 40 tokens; the client must still get the reference's 200 tokens with exit 0;
    then `after(nodes, victim)` checks the victim (processes still running)."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, replicas=[2], first_extra=["--step-delay-us", "5000"], api=True)
        ref = reference(PROMPT, N_GEN)
        c = client(procs, m, boot, "client", PROMPT, N_GEN)
        victim = serving_shard2(nodes, c)
        deadline = time.time() + 60
        while len(client_ids(c)) < 40 and time.time() < deadline and c.alive():
            time.sleep(0.01)
        n_before = len(client_ids(c))
        check(c.alive() and n_before < N_GEN, "generation ended before the %s (%d tokens)" % (action.__name__, n_before))
        t0 = time.time()
        action(nodes, victim, m)
        rc = wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = client_ids(c)
        check(got == ref, "tokens differ after the %s:\n ref %s\n got %s" % (action.__name__, ref[:40], got[:40]))
        survivor = "r2" if victim == "n2" else "n2"
        check(re.search(r"stage 2 of 4 opened", nodes[survivor].proc.output()) is not None, "the replica never took over")
        print("%s: %s hit after %d tokens; %d identical tokens; finished %.2fs later" %
              (action.__name__, victim, n_before, len(got), time.time() - t0), file=sys.stderr)
        after(nodes, victim)


def leave(nodes, victim, model):
    nodes[victim].proc.signal(signal.SIGTERM)


def swap(nodes, victim, model):
    node = S.Node(nodes[victim].proc, nodes[victim].port, nodes[victim].api, None)
    # the session on its stage is advertised as its queue (record `q`, /swarm/status self.queue)
    deadline = time.time() + 3
    st = node.status()
    while (st is None or st["self"].get("queue", 0) < 1) and time.time() < deadline:
        time.sleep(0.05)
        st = node.status()
    check(st is not None and st["self"].get("queue", 0) >= 1, "queue not advertised: %r" % (st or {}).get("self"))
    r = harness.run([harness.BIN, "load-shard", "--api", str(nodes[victim].api), "--node", st["node_id"], "--shard", "3",
                     "--key", model.owner_key])
    check(r.returncode == 0, "LOAD_SHARD refused: %s %s" % (r.stdout, r.stderr))


def left_cleanly(nodes, victim):
    p = nodes[victim].proc
    deadline = time.time() + 10
    while p.alive() and time.time() < deadline:
        time.sleep(0.02)
    check(not p.alive(), "%s did not exit within 10 s of SIGTERM" % victim)
    check(p.p.returncode == 0, "%s exited with %s:\n%s" % (victim, p.p.returncode, p.output()[-2000:]))
    check("released the compute stage" in p.output(), "%s did not hand its session over" % victim)


def swapped_cleanly(nodes, victim):
    p = nodes[victim].proc
    p.wait_for(r"switching from shard 2 to shard 3", timeout=10)
    p.wait_for(r"released the compute stage", timeout=10)
    p.wait_for(r"shard 3 loaded", timeout=30)  # fetched from n3, loaded: the old stage is long gone
    check(p.alive(), "%s died after LOAD_SHARD:\n%s" % (victim, p.output()[-3000:]))


def case_text():
    S.node_supported()
    text = "Once upon a time, there was a little girl"
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m)
        r = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "-p", text, "-n", "30", "--temp", "0",
                         "--ids", "--ignore-eos", "-t", "1"], timeout=120, check_rc=0)
        ref = r.stdout.split()
        cache = m.cache("client-cache", [3])  # a node's cache holding shard 3
        c = client_text(procs, m, boot, "client", text, ["--cache", cache])
        rc = wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        check("tokenizer from" in c.output() and "shard-3.gguf" in c.output(), "tokenizer not taken from the cache")
        got = client_ids(c)
        check(got == ref, "tokens differ:\n ref %s\n got %s" % (ref, got))
        # neither --tokenizer nor a shard in --cache: the tokenizer comes from the swarm
        # (a loaded node's shard header, verified; light_client_it.py tests it in depth)
        empty = m.cache("empty-cache", [])
        for name, extra in (("client2", []), ("client3", ["--cache", empty])):
            c = client_text(procs, m, boot, name, text, extra)
            rc = wait_exit(c)
            check(rc == 0 and "tokenizer from node" in c.output(), "%s: rc %s %s" % (name, rc, c.output()[-1500:]))
            check(client_ids(c) == ref, "%s: tokens differ:\n ref %s\n got %s" % (name, ref, client_ids(c)))
        print("text: %d tokens identical with the tokenizer of a cached shard" % len(got), file=sys.stderr)


def case_longstep():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, extra_for={"n1": ["--step-delay-us", "1500000"]})
        ref = reference(PROMPT, 3)
        t0 = time.time()
        c = client(procs, m, boot, "client", PROMPT, 3, ["--deadline-ms", "1000"])
        rc = wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        check(client_ids(c) == ref, "tokens differ:\n ref %s\n got %s" % (ref, client_ids(c)))
        opened = len(re.findall(r"stage 1 of 4 opened", nodes["n1"].proc.output()))
        check(opened == 1, "shard 1 was opened %d times (a step was taken for a stall)" % opened)
        print("longstep: 3 steps of 1.5 s with a 1 s deadline: %d identical tokens in %.1f s" %
              (len(ref), time.time() - t0), file=sys.stderr)


def case_stop():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, replicas=[2], first_extra=["--step-delay-us", "5000"])
        ref = reference(PROMPT, N_GEN)
        c = client(procs, m, boot, "client", PROMPT, N_GEN, ["--deadline-ms", "1500"])
        victim = serving_shard2(nodes, c)
        survivor = "r2" if victim == "n2" else "n2"
        deadline = time.time() + 60
        while len(client_ids(c)) < 40 and time.time() < deadline and c.alive():
            time.sleep(0.01)
        n_before = len(client_ids(c))
        check(c.alive() and n_before < N_GEN, "generation ended before the stop (%d tokens)" % n_before)
        t0 = time.time()
        nodes[victim].proc.signal(signal.SIGSTOP)
        try:
            nodes[survivor].proc.wait_for(r"stage 2 of 4 opened", timeout=20)
            took = time.time() - t0
            rc = wait_exit(c)
        finally:
            nodes[victim].proc.signal(signal.SIGCONT)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        check(client_ids(c) == ref, "tokens differ after the stop")
        check(took < 6, "the stall was seen after %.1f s (deadline 1.5 s)" % took)
        print("stop: %s stopped after %d tokens; the replica took over %.1f s later; %d identical tokens" %
              (victim, n_before, took, N_GEN), file=sys.stderr)


def case_promptlen():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m)
        r = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "--prompt-len", "24", "-n", "12",
                         "--temp", "0", "--ids", "--ignore-eos", "-t", "1"], timeout=120, check_rc=0)
        ref = r.stdout.split()
        args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model", m.torrent,
                "--prompt-len", "24", "-n", "12", "--temp", "0", "--ids", "--ignore-eos", "--wait", "60"]
        c = procs.start("client", args)
        rc = wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        check(client_ids(c) == ref, "--prompt-len: tokens differ:\n ref %s\n got %s" % (ref, client_ids(c)))
        print("promptlen: 12 tokens identical after a 24-token synthetic prompt", file=sys.stderr)


def case_tmpdir():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, first_extra=["--step-delay-us", "5000"])
        td = harness.tmpdir("sw-pipe-tmp-")
        env = {"TMPDIR": td}

        def light(name, n, extra=(), bootport=boot):
            args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % bootport, "--model", m.torrent,
                    "--prompt-ids", PROMPT, "-n", str(n), "--temp", "0", "--ids", "--ignore-eos"] + list(extra)
            return procs.start(name, args, env=env)

        def left(what):
            rest = os.listdir(td)
            check(rest == [], "%s left %s in TMPDIR" % (what, rest))

        c = light("ok", 20, ["--wait", "60"])
        check(wait_exit(c) == 0, "client failed:\n%s" % c.output()[-2000:])
        left("a normal end")
        for sig in (signal.SIGINT, signal.SIGTERM):
            c = light("sig%d" % sig, N_GEN, ["--wait", "60"])
            deadline = time.time() + 60
            while len(client_ids(c)) < 10 and time.time() < deadline and c.alive():
                time.sleep(0.01)
            check(c.alive() and os.listdir(td), "no running client with a temporary folder")
            c.signal(sig)
            wait_exit(c, 30)
            left("signal %d" % sig)
        c = light("nobody", 5, ["--wait", "1"], harness.free_port())
        check(wait_exit(c, 30) != 0, "a client with no swarm succeeded")
        left("a failure")
        print("tmpdir: nothing left after an end, SIGINT, SIGTERM and a failure", file=sys.stderr)


def api_post(port, path, body, timeout=30):
    """(status, headers, body text) of a JSON POST."""
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def case_busy():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories()
        nodes, boot = start_swarm(procs, m, extra_for={"n1": ["--max-sessions", "1"]}, first_extra=["--step-delay-us", "5000"],
                                  api=True)
        c = client(procs, m, boot, "client", PROMPT, N_GEN)
        nodes["n1"].proc.wait_for(r"stage 1 of 4 opened", timeout=60)
        body = {"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}
        st, hdrs, text = api_post(nodes["n0"].api, "/v1/completions", body)
        check(c.alive(), "the client finished before the request (the test needs its session on n1)")
        check(st == 429, "busy swarm: HTTP %d %s" % (st, text[:500]))
        ra = {k.lower(): v for k, v in hdrs.items()}.get("retry-after")
        check(ra == "2", "Retry-After: %r" % ra)
        check("swarm_busy" in text and "shard 1" in text and "busy" in text, "the error: %s" % text[:500])
        check(wait_exit(c) == 0, "client failed:\n%s" % c.output()[-2000:])
        st, _, text = api_post(nodes["n0"].api, "/v1/completions", body)
        check(st == 200, "after the client: HTTP %d %s" % (st, text[:500]))
        print("busy: 429 with Retry-After 2 while shard 1 was full, then 200", file=sys.stderr)


def client_text(procs, model, boot, name, text, extra):
    args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model", model.torrent,
            "-p", text, "-n", "30", "--temp", "0", "--ids", "--ignore-eos", "--wait", "60"] + list(extra)
    return procs.start(name, args)


def case_leave():
    takeover(leave, left_cleanly)


def case_swap():
    takeover(swap, swapped_cleanly)


if __name__ == "__main__":
    cases = {"equal": case_equal, "kill": case_kill, "concurrent": case_concurrent, "refusal": case_refusal,
             "cancel": case_cancel, "leave": case_leave, "swap": case_swap, "text": case_text,
             "longstep": case_longstep, "stop": case_stop, "promptlen": case_promptlen, "tmpdir": case_tmpdir,
             "busy": case_busy}
    harness.main_cases(cases)
