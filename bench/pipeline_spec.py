#!/usr/bin/env python3
"""pipeline_spec.py [SPLIT_DIR ...] — speculative decoding across the pipeline (issue 15,
item 2): decode tokens/s with and without `generate --swarm --spec K` on a swarm whose hops
have a real delay.

With root and a kernel that has sch_netem, it creates a network namespace, brings its
loopback up with `tc qdisc netem delay DELAY` (default 2 ms: every packet on it, so every hop
between nodes, waits that long), and runs 3 `shardswarm node` processes (one per shard) and
the client inside it. Where netem is missing (the development VM's kernel has only tbf, htb
and pfifo), the nodes run on 127.0.0.1 with `node --hop-delay-ms N` instead: every pipeline
message to another node waits N ms in the sender before it is written (libuv timers: N to
N+1 ms).
Without SPLIT_DIR it splits ../shared/data/models/stories260K.gguf in 3 (compute ~0: the hops
are all); a SPLIT_DIR (e.g. TinyLlama Q4_0 in 3 shards) adds a real-shape row. Prompts:
"repetitive" (text that repeats, like code being edited or a list being continued) and
"story" (plain prose); with a model whose tokenizer is not stories260K's the prompts are
synthetic ids: a 24-id phrase repeated 6 times, and 150 random ids. Runs alternate
off / on, SW_BENCH_RUNS (default 3) each; the median is reported with the drafted and
accepted counts, and the tokens must be identical.

Environment: SW_BENCH_GEN (tokens, default 96), SW_BENCH_SPEC (K, default 4),
SW_BENCH_DELAY (default "2ms"), SW_BENCH_RUNS.
"""
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
import harness  # noqa: E402

BIN = os.path.abspath(harness.BIN)
N_GEN = int(os.environ.get("SW_BENCH_GEN") or 96)
SPEC = int(os.environ.get("SW_BENCH_SPEC") or 4)
DELAY = os.environ.get("SW_BENCH_DELAY") or "2ms"
MODE = {"ns": None}  # "netem" or "node"
RUNS = int(os.environ.get("SW_BENCH_RUNS") or 3)
NS = "sw-spec-%d" % os.getpid()

TEXT = {
    "repetitive": "One, two, three, four, five. One, two, three, four, five. One, two, three,",
    "story": "Once upon a time, there was a little girl named Lily. She loved to play outside.",
}


def log(*a):
    print(*a, flush=True)


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        harness.fail("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def netns_up():
    if os.geteuid() != 0:
        MODE["ns"] = "node"
        return
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    r = subprocess.run(["ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", DELAY],
                       capture_output=True, text=True)
    if r.returncode:
        log("tc netem: %s -> the nodes delay their own messages (node --hop-delay-ms)" % r.stderr.strip())
        netns_down()
        MODE["ns"] = "node"
    else:
        MODE["ns"] = "netem"


def netns_down():
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def ping_ms():
    r = subprocess.run(["ip", "netns", "exec", NS, "ping", "-c", "3", "-i", "0.2", "127.0.0.1"], capture_output=True,
                       text=True)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return float(m.group(1)) if m else None


def in_ns(args):
    return ["ip", "netns", "exec", NS] + args if MODE["ns"] == "netem" else args


def status(api):
    with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % api, timeout=5) as r:
        return json.loads(r.read())


def swarm(procs, split, tag):
    root = harness.tmpdir("sw-pspec-")
    boot, apis, nodes = None, [], []
    n = len([f for f in os.listdir(split) if re.match(r"shard-\d+\.gguf$", f)])
    for k in range(n):
        cache = os.path.join(root, "n%d" % k)
        os.makedirs(os.path.join(cache, "shards"))
        os.symlink(os.path.join(split, "shard-%d.gguf" % k), os.path.join(cache, "shards", "shard-%d.gguf" % k))
        args = [BIN, "node", "--model", os.path.join(split, "model.torrent"), "--cache", cache, "--listen", "0",
                "--shard", str(k), "--api", "0"]
        if boot:
            args += ["--bootstrap", "127.0.0.1:%d" % boot]
        if MODE["ns"] == "node":
            args += ["--hop-delay-ms", str(int(re.match(r"(\d+)", DELAY).group(1)))]
        p = procs.start("%s-n%d" % (tag, k), in_ns(args))
        port = int(p.wait_for(r"listening on port (\d+)", timeout=120).group(1))
        apis.append(int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=120).group(1)))
        boot = boot or port
        nodes.append(p)
    for p in nodes:
        p.wait_for(r"shard \d+ loaded", timeout=600)
    return boot, apis


def spec_stats(apis):
    # the API listens inside the namespace: read it from there
    out = {}
    for api in apis:
        r = subprocess.run(in_ns(["python3", "-c", "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                                  "'http://127.0.0.1:%d/swarm/status',timeout=5).read().decode())" % api]),
                           capture_output=True, text=True)
        try:
            pl = json.loads(r.stdout).get("pipeline", {})
        except ValueError:
            continue
        for key in ("spec_steps", "spec_drafted", "spec_accepted"):
            out[key] = out.get(key, 0) + pl.get(key, 0)
    return out


def client(procs, split, boot, prompt_args, spec, tag):
    args = [BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model",
            os.path.join(split, "model.torrent"), "--tokenizer", os.path.join(split, "shard-0.gguf"),
            "-n", str(N_GEN), "--temp", "0", "--ignore-eos", "--ids", "--no-echo", "--wait", "300", "--json-timings",
            "--deadline-ms", "60000", "--no-prefix-cache"] + prompt_args
    if spec:
        args += ["--spec", str(spec)]
    c = procs.start(tag, in_ns(args))
    deadline = time.time() + 1800
    while c.alive() and time.time() < deadline:
        time.sleep(0.05)
    out = c.output()
    js = [l for l in out.splitlines() if l.startswith("{\"prompt_tokens\"")]
    if c.p.returncode != 0 or not js:
        harness.fail("%s failed:\n%s" % (tag, out[-3000:]))
    body = re.sub(r"\{[^\n]*\}(\n|$)", "", re.sub(r"\[[A-Z]+\][^\n]*(\n|$)", "", out))
    return json.loads(js[-1]), re.findall(r"-?\d+", body)


def prompts(split, is_stories):
    if is_stories:
        return [(name, ["-p", text]) for name, text in TEXT.items()]
    rnd = random.Random(7)
    phrase = [rnd.randrange(100, 31000) for _ in range(24)]
    return [("repetitive ids", ["--prompt-ids", " ".join(map(str, [1] + phrase * 6))]),
            ("random ids", ["--prompt-ids", " ".join(map(str, [1] + [rnd.randrange(100, 31000) for _ in range(150)]))])]


def bench_model(split, label, is_stories):
    with harness.Procs() as procs:
        boot, apis = swarm(procs, split, label)
        client(procs, split, boot, ["--prompt-ids", "1 2 3"], 0, label + "-warm")
        for name, pargs in prompts(split, is_stories):
            rates = {0: [], SPEC: []}
            ref, stats0 = None, spec_stats(apis)
            for r in range(RUNS):
                for spec in (0, SPEC):
                    t, ids = client(procs, split, boot, pargs, spec, "%s-%s-%d-%d" % (label, name[:3], spec, r))
                    rates[spec].append(t["gen_tps"])
                    if ref is None:
                        ref = ids
                    elif ids != ref:
                        harness.fail("%s / %s: tokens differ with --spec %d:\n%s\n%s" % (label, name, spec, ref, ids))
            st = spec_stats(apis)
            d = {k: st.get(k, 0) - stats0.get(k, 0) for k in st}
            off, on = statistics.median(rates[0]), statistics.median(rates[SPEC])
            log("%s, %s prompt: %.1f tok/s without, %.1f with --spec %d -> x%.2f (runs: %s | %s); %d speculative "
                "steps, %d of %d drafts accepted (%.2f per step); tokens identical; load %s" %
                (label, name, off, on, SPEC, on / off, " ".join("%.1f" % x for x in rates[0]),
                 " ".join("%.1f" % x for x in rates[SPEC]), d.get("spec_steps", 0), d.get("spec_accepted", 0),
                 d.get("spec_drafted", 0), d.get("spec_accepted", 0) / max(1, d.get("spec_steps", 0)),
                 open("/proc/loadavg").read().split()[:3]))


def main():
    netns_up()
    try:
        log("%s %s per hop; %d tokens, --spec %d, %d runs each; load %s" %
            ("netns %s: lo with netem delay (ping rtt %.2f ms):" % (NS, ping_ms() or -1) if MODE["ns"] == "netem"
             else "127.0.0.1, node --hop-delay-ms:", DELAY, N_GEN, SPEC, RUNS, open("/proc/loadavg").read().split()[:3]))
        splits = [os.path.abspath(a) for a in sys.argv[1:]]
        if not splits or os.environ.get("SW_BENCH_STORIES", "1") == "1":
            model = harness.shared_model()
            d = harness.tmpdir("sw-pspec-split-")
            sh(BIN, "split", model, "--shards", "3", "--out", d)
            bench_model(d, "stories260K-3", True)
        for s in sys.argv[1:]:
            bench_model(os.path.abspath(s), os.path.basename(s.rstrip("/")), False)
    finally:
        netns_down()


if __name__ == "__main__":
    main()
