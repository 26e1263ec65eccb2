#!/usr/bin/env python3
"""netns_it.py — a swarm across network namespaces (issue 13 item 4). Needs root and
iproute2 (ip netns, veth, bridge, tc tbf); skips with a message otherwise.

Every node runs in its own network namespace; the namespaces are joined only by veth pairs
to a bridge that lives in one more namespace of the test's own. Nothing is connected to the
root namespace or to any real interface, and no namespace has a default route, so nothing
can leave. Downloads into each node are limited with tc tbf on its bridge-side veth. All
namespaces (prefix sw<pid>), the tmpfs and every process are removed when the test ends,
fails, or is interrupted (atexit + signal handlers; processes by PID).

stories260K split in 3 shards; 1 seeder (--seed-all) + 6 nodes (n0,n1: shard 0; n2,n3:
shard 1; n4,n5: shard 2), all starting with empty caches; clients in a namespace of their
own. In order:

  A. downloads with faults: kill -9 of n3 in the middle of its (slow, 400 kbit/s) download,
     then a restart that resumes; n4's shards folder on a 64 KiB tmpfs (disk full: the node
     says so, then fetches by itself once the tmpfs is enlarged); n5 partitioned from the
     swarm with a peer on its own loopback that serves corrupt pieces (rejected, banned),
     then healed. Every node loads, every loaded file equals the split's.
  B. generation under faults: a client generates 160 greedy tokens while a peer sends random
     bytes to every node's TCP and UDP port and the node serving shard 2 is killed (kill -9)
     after 30 tokens: the replica takes over, the tokens equal single-process `generate`.
  C. partition and a lying node: n2 restarts with the test hook SW_TEST_CORRUPT_HIDDEN=1
     (wrong hidden states); n1 and n3 are partitioned (they say why they are not ready), so a
     client (--spot-check 1) is routed through n2; the partition heals, a spot check on n3
     catches n2, the session moves to n3 and finishes.
  End: every node is alive (but the ones killed on purpose) and ready again by itself; every
  [STATUS] line that says "not ready" names a reason.
"""
import atexit
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "swarm"))
import harness  # noqa: E402
from harness import check, fail  # noqa: E402

PREFIX = "sw%d" % os.getpid()
SUBNET = "10.213.77."
PORT = 6881
PROMPT = "1 403 407 261 378 285 266 350 432 306 286"
T0 = time.time()


def log(msg):
    print("[%6.2fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def sh(*args, check_rc=True):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if check_rc and r.returncode != 0:
        fail("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


class Net:
    """A bridge namespace and one namespace per host, each with one veth to the bridge."""

    def __init__(self):
        self.hosts = {}  # name -> (ns, ip, bridge-side veth)
        self.mounts = []
        self.br = PREFIX + "-br"
        atexit.register(self.cleanup)
        sh("ip", "netns", "add", self.br)
        sh("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.br, "link", "set", "br0", "up")

    def add(self, name):
        i = len(self.hosts) + 1
        ns, ip, veth = "%s-%s" % (PREFIX, name), SUBNET + str(i), "b%d" % i
        sh("ip", "netns", "add", ns)
        self.hosts[name] = (ns, ip, veth)
        sh("ip", "-n", self.br, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.br, "link", "set", veth, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns, ip

    def rate(self, name, rate):
        """Limits what reaches host `name` (its downloads): tbf on the bridge side."""
        _, _, veth = self.hosts[name]
        sh("ip", "netns", "exec", self.br, "tc", "qdisc", "replace", "dev", veth, "root", "tbf", "rate", rate,
           "burst", "32kbit", "latency", "400ms")

    def partition(self, name):
        sh("ip", "-n", self.br, "link", "set", self.hosts[name][2], "down")

    def heal(self, name):
        sh("ip", "-n", self.br, "link", "set", self.hosts[name][2], "up")

    def ns(self, name):
        return self.hosts[name][0]

    def ip(self, name):
        return self.hosts[name][1]

    def tmpfs(self, path, size):
        os.makedirs(path, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", "size=%s" % size, "sw-netns", path)
        self.mounts.append(path)

    def cleanup(self):
        for m in self.mounts:
            subprocess.run(["umount", "-l", m], capture_output=True)
        self.mounts = []
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(PREFIX + "-"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)


def preflight():
    if os.geteuid() != 0:
        harness.skip("network-namespace tests need root (ip netns, veth, tc, mount)")
    for tool in ("ip", "tc", "mount"):
        if not shutil.which(tool):
            harness.skip("%s is not installed (iproute2 / util-linux)" % tool)
    probe = PREFIX + "-probe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        harness.skip("cannot create a network namespace: %s" % r.stderr.strip())
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if not os.path.exists(harness.shared_model()):
        harness.skip("stories260K.gguf is absent (%s)" % harness.shared_model())


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def wait(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out after %ss waiting for %s" % (timeout, what))


def ids_of(out):
    out = re.sub(r"\[[A-Z]+\][^\n]*(\n|$)", "", out)
    out = re.sub(r"\{[^\n]*\}(\n|$)", "", out)
    return re.findall(r"\d+", out)


def main():
    preflight()
    import swarm_it as S
    S.node_supported()
    net = Net()
    procs = harness.Procs()
    model = S.Model(harness.tmpdir("sw-netns-"), 3, source=harness.shared_model())
    src = {k: sha(model.shard_path(k)) for k in range(3)}
    for name in ["seed", "n0", "n1", "n2", "n3", "n4", "n5", "cl", "bad"]:
        net.add(name)
    for name in ["n0", "n1", "n2", "n4", "n5"]:
        net.rate(name, "8mbit")
    net.rate("n3", "400kbit")  # its shard (~400 KB, 2 pieces) takes ~8 s: killed on the way
    log("namespaces up: %s-{br,seed,n0..n5,cl,bad}" % PREFIX)
    nodes, caches, shard_of = {}, {}, {}

    def start(name, shard, extra=(), env=None, boots=None):
        cache = caches.setdefault(name, model.cache(name, list(range(3)) if shard is None else []))
        args = ["ip", "netns", "exec", net.ns(name), harness.BIN, "node", "--model", model.torrent, "--cache", cache,
                "--listen", str(PORT), "--bind", net.ip(name), "--threads", "1", "--status-interval", "1000",
                "--step-delay-us", "2000"]
        args += ["--seed-all"] if shard is None else ["--shard", str(shard)]
        for b in (boots if boots is not None else ([] if name == "seed" else ["%s:%d" % (net.ip("seed"), PORT)])):
            args += ["--bootstrap", b]
        nodes[name] = procs.start(name, args + list(extra), env=env)
        shard_of[name] = shard
        return nodes[name]

    # ---- A: downloads with faults
    start("seed", None)
    nodes["seed"].wait_for(r"listening on port", timeout=20)
    net.tmpfs(os.path.join(model.cache("n4"), "shards"), "64k")
    net.partition("n5")
    bad = procs.start("corrupt-peer", ["ip", "netns", "exec", net.ns("n5"), sys.executable, os.path.join(HERE, "badpeer.py"),
                                       "corrupt", model.torrent, model.split, "7000"])
    bad.wait_for(r"corrupt seeder on", timeout=10)
    for name, k in [("n0", 0), ("n1", 0), ("n2", 1), ("n3", 1), ("n4", 2)]:
        start(name, k)
    start("n5", 2, boots=["%s:%d" % (net.ip("seed"), PORT), "127.0.0.1:7000"])
    log("seeder + 6 nodes started (n3 slow, n4 on a 64 KiB tmpfs, n5 partitioned beside a corrupt peer)")

    nodes["n3"].wait_for(r"fetching [1-9]\d?%", timeout=30)
    nodes["n3"].kill9()
    log("n3 killed (kill -9) mid-download")
    net.rate("n3", "8mbit")
    part = os.path.join(caches["n3"], "shards", "shard-1.gguf.part")
    check(not os.path.exists(os.path.join(caches["n3"], "shards", "shard-1.gguf")), "n3 has a whole file before the kill?")
    start("n3", 1)

    nodes["n4"].wait_for(r"disk full", timeout=30)
    log("n4: disk full reported")
    sh("mount", "-o", "remount,size=8m", os.path.join(caches["n4"], "shards"))

    nodes["n5"].wait_for(r"failing the hash of piece \d+: banned", timeout=30)
    log("n5: the corrupt peer's pieces rejected, peer banned")
    check(not re.search(r"shard 2 loaded", nodes["n5"].output()), "n5 loaded a shard from the corrupt peer")
    net.heal("n5")
    log("n5 healed")
    for name in ["n0", "n1", "n2", "n3", "n4", "n5"]:
        nodes[name].wait_for(r"shard %d loaded" % shard_of[name], timeout=40)
    for name in ["n0", "n1", "n2", "n3", "n4", "n5"]:
        f = os.path.join(caches[name], "shards", "shard-%d.gguf" % shard_of[name])
        check(sha(f) == src[shard_of[name]], "%s's loaded shard differs from the split's" % name)
    check(not os.path.exists(part), "n3's .part is still there after the resumed fetch")
    log("A: every node loaded a shard equal to the split's (n3 resumed, n4 after the disk had room, n5 after the heal)")

    # ---- B: generation while a peer sends random bytes and the shard-2 node dies
    ref = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "--prompt-ids", PROMPT, "-n", "160", "--temp",
                       "0", "--ids", "--ignore-eos", "-t", "1"], timeout=60, check_rc=0).stdout.split()
    cdir = harness.tmpdir("sw-netns-cl-")
    targets = ["%s:%d" % (net.ip(n), PORT) for n in ["seed", "n0", "n1", "n2", "n3", "n4", "n5"]]
    noise = procs.start("random-peer", ["ip", "netns", "exec", net.ns("bad"), sys.executable,
                                        os.path.join(HERE, "badpeer.py"), "random", "3"] + targets)
    client = procs.start("client1", ["ip", "netns", "exec", net.ns("cl"), harness.BIN, "generate", "--swarm", "--bootstrap",
                                     "%s:%d" % (net.ip("seed"), PORT), "--model", model.torrent, "--cache", cdir,
                                     "--prompt-ids", PROMPT, "-n", "160", "--temp", "0", "--ids", "--ignore-eos", "--wait",
                                     "30"])
    victim = wait(lambda: next((n for n in ("n4", "n5") if re.search(r"stage 2 of 3 opened", nodes[n].output())), None),
                  30, "the shard-2 node of client 1")
    wait(lambda: len(ids_of(client.output())) >= 30 or not client.alive(), 30, "30 tokens")
    check(client.alive(), "client 1 ended before the kill:\n%s" % client.output()[-2000:])
    nodes[victim].kill9()
    log("B: %s (serving shard 2) killed after %d tokens" % (victim, len(ids_of(client.output()))))
    wait(lambda: not client.alive(), 60, "client 1 to finish")
    check(client.p.returncode == 0, "client 1 failed (rc %s):\n%s" % (client.p.returncode, client.output()[-3000:]))
    got = ids_of(client.output())
    check(got == ref, "client 1's tokens differ from single-process:\n ref %s\n got %s" % (ref[:30], got[:30]))
    wait(lambda: not noise.alive(), 20, "the random-bytes peer")
    log("B: 160 tokens equal single-process; %s" % noise.output().strip().splitlines()[-1])
    for name in ["seed", "n0", "n1", "n2", "n3", "n4", "n5"]:
        if name != victim:
            check(nodes[name].alive(), "%s died during the random bytes:\n%s" % (name, nodes[name].output()[-2000:]))
    start(victim, 2)
    nodes[victim].wait_for(r"shard 2 loaded", timeout=30)

    # ---- C: partition two nodes; a lying node caught by a spot check
    nodes["n2"].kill9()
    # 25 ms a step on the liar (later flags win): the client's 400 tokens take ~10 s through it, so
    # the check that starts once the partition heals (a few seconds: n3 must be seen again by the
    # client, the upstream and the witness) always has time to end before the answer does
    start("n2", 1, extra=["--step-delay-us", "25000"], env={"SW_TEST_CORRUPT_HIDDEN": "1"})
    nodes["n2"].wait_for(r"shard 1 loaded", timeout=30)
    n2_id = re.search(r"node id ([0-9a-f]{8})", nodes["n2"].output()).group(1)
    mark = {n: len(nodes[n].output()) for n in ("n1", "n3")}
    net.partition("n1")
    net.partition("n3")
    log("C: n2 restarted as a liar (SW_TEST_CORRUPT_HIDDEN=1); n1 and n3 partitioned")
    for name in ("n1", "n3"):
        wait(lambda name=name: re.search(r"\[STATUS\][^\n]*not ready: shard \d+: [^\n]+", nodes[name].output()[mark[name]:]),
             30, "%s to say why it is not ready" % name)
    # the others stop counting them as live (4 s without a keep-alive)
    wait(lambda: all(re.search(r"departed", nodes[n].output()) for n in ("n0", "n2")), 15, "n1/n3 to be seen departed")
    time.sleep(0.5)
    client2 = procs.start("client2", ["ip", "netns", "exec", net.ns("cl"), harness.BIN, "generate", "--swarm", "--bootstrap",
                                      "%s:%d" % (net.ip("seed"), PORT), "--model", model.torrent, "--cache", cdir,
                                      "--prompt-ids", PROMPT, "-n", "400", "--temp", "0", "--ids", "--ignore-eos", "--wait",
                                      "30", "--spot-check", "1"])
    wait(lambda: len(ids_of(client2.output())) >= 20 or not client2.alive(), 30, "client 2's first 20 tokens")
    check(re.search(r"stage 1 of 3 opened", nodes["n2"].output()), "client 2 was not routed through the liar n2")
    net.heal("n1")
    net.heal("n3")
    log("C: healed after %d tokens of client 2 (routed through n2)" % len(ids_of(client2.output())))
    wait(lambda: not client2.alive(), 90, "client 2 to finish")
    out2 = client2.output()
    check(client2.p.returncode == 0, "client 2 failed (rc %s):\n%s" % (client2.p.returncode, out2[-3000:]))
    m = re.search(r"\[SPOT\][^\n]*shard 1: node %s…[^\n]*returned wrong hidden states[^\n]*" % n2_id[:4], out2)
    check(m is not None, "the lying node n2 (%s…) was not caught:\n%s" % (n2_id, out2[-3000:]))
    check(len(ids_of(out2)) == 400, "client 2 printed %d tokens" % len(ids_of(out2)))
    log("C: caught: %s" % m.group(0)[:200])

    # ---- every node ready again by itself, and every "not ready" said why
    for name in ["n0", "n1", "n2", "n3", "n4", "n5"]:
        nodes[name].wait_for(r"\[READY\] swarm ready", timeout=30)
        check(nodes[name].alive(), "%s is not running" % name)
    def last_status_ready(n):
        st = [ln for ln in nodes[n].output().splitlines() if ln.startswith("[STATUS]")]
        return st and st[-1].rstrip().endswith("| ready")
    wait(lambda: all(last_status_ready(n) for n in ["n0", "n1", "n2", "n3", "n4", "n5"]), 30,
         "every node's last status to be ready")
    for name in ["seed", "n0", "n1", "n2", "n3", "n4", "n5"]:
        for line in nodes[name].output().splitlines():
            if line.startswith("[STATUS]") and "not ready" in line:
                check(re.search(r"not ready: shard \d+: \S", line), "%s was not ready without a reason: %s" % (name, line))
    log("PASS: every node ready again; every not-ready status named its reason (%.1f s)" % (time.time() - T0))


if __name__ == "__main__":
    harness.main(main)
