"""swarm_it.py — helpers shared by the swarm integration tests and bench/50_swarm.sh:
make a split model with an owner key and a torrent, start a seeder and nodes on loopback,
read their /swarm/status, wait for readiness. Every process goes through harness.Procs.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from harness import check, fail  # noqa: E402,F401

BUILD = os.environ.get("SW_BUILD_DIR") or os.path.dirname(harness.BIN)


def mktorrent_bin():
    p = os.path.join(BUILD, "sw_mktorrent")
    if not os.path.exists(p):
        harness.skip("test helper sw_mktorrent not built (%s)" % p)
    return p


def node_supported():
    r = subprocess.run([harness.BIN, "node", "--model", "/nonexistent.torrent", "--cache", "/tmp/sw-none"],
                       capture_output=True, text=True, timeout=30)
    if "no BitTorrent session" in r.stderr:
        harness.skip("this build's node is a stub (BitTorrent session or DHT glue not built yet)")


class Model:
    """A split model: split/shard-K.gguf, split/model.json, split/model.torrent, owner.key."""

    def __init__(self, root, n_shards, source=None, synth=None):
        self.root = root
        self.split = os.path.join(root, "split")
        os.makedirs(root, exist_ok=True)
        if not os.environ.get("SW_KEEP_TMP"):
            atexit.register(shutil.rmtree, root, True)  # at exit: the processes are stopped by then
        self.owner_key = os.path.join(root, "owner.key")
        r = harness.run([harness.BIN, "keygen", "-o", self.owner_key], check_rc=0)
        self.owner_pub = r.stdout.strip()
        if source is None:
            source = os.path.join(root, "synth.gguf")
            r = harness.run([harness.BIN, "synth"] + synth + ["-o", source], timeout=120)
            if r.returncode != 0:
                harness.skip("synth unavailable: %s" % r.stderr.strip()[-300:])
        harness.run([harness.BIN, "split", source, "--shards", str(n_shards), "--out", self.split,
                     "--owner-pubkey", self.owner_pub, "-q"], check_rc=0, timeout=120)
        r = harness.run([mktorrent_bin(), self.split], check_rc=0)
        self.info_hash = r.stdout.strip()
        self.torrent = os.path.join(self.split, "model.torrent")
        self.n = n_shards

    def shard_path(self, k):
        return os.path.join(self.split, "shard-%d.gguf" % k)

    def cache(self, name, shards=()):
        """A node cache folder holding copies of the given shards."""
        c = os.path.join(self.root, name)
        os.makedirs(os.path.join(c, "shards"), exist_ok=True)
        for k in shards:
            shutil.copyfile(self.shard_path(k), os.path.join(c, "shards", "shard-%d.gguf" % k))
        return c


class Node:
    def __init__(self, proc, port, api, cache):
        self.proc, self.port, self.api, self.cache = proc, port, api, cache

    def resolve(self, timeout=30):
        """Reads the ports the node bound (it was started with --listen 0 --api 0)."""
        if self.port is None:
            self.port = int(self.proc.wait_for(r"listening on port (\d+)", timeout=timeout).group(1))
        if self.api is None:
            self.api = int(self.proc.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=timeout).group(1))

    def status(self, timeout=2):
        if self.api is None:
            self.resolve()
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % self.api, timeout=timeout) as r:
                return json.loads(r.read().decode())
        except Exception:
            return None

    def ready(self):
        s = self.status()
        return bool(s and s.get("ready"))

    def post(self, path, body, timeout=5):
        """POSTs an owner command (hex bytes) as the API wants it: {"command": hex}, JSON."""
        data = json.dumps({"command": body.decode()}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.api, path), data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


class Swarm:
    def __init__(self, procs, model):
        self.procs, self.model = procs, model
        self.nodes = {}
        self.boot = None

    def start(self, name, shard=None, cache_shards=(), seed_all=False, extra=(), bootstrap=True, wait=True):
        # Ports 0: the node binds whatever the kernel gives and prints it (no race with other
        # tests running at the same time, unlike picking a "free" port first).
        cache = self.model.cache(name, cache_shards if not seed_all else range(self.model.n))
        args = [harness.BIN, "node", "--model", self.model.torrent, "--cache", cache, "--listen", 0,
                "--api", 0, "--status-interval", "1000", "--threads", "1"]
        if seed_all:
            args.append("--seed-all")
        elif shard is not None:
            args += ["--shard", str(shard)]
        if bootstrap and self.boot:
            args += ["--bootstrap", "127.0.0.1:%d" % self.boot]
        args += list(extra)
        p = self.procs.start(name, args)
        n = Node(p, None, None, cache)
        if wait:  # else: n.resolve() later (bench: spawn many at once)
            n.resolve()
        self.nodes[name] = n
        if seed_all and self.boot is None:
            n.resolve()
            self.boot = n.port
        return n

    def wait_api(self, names=None, timeout=20):
        for name in names or list(self.nodes):
            n = self.nodes[name]
            deadline = time.time() + timeout
            while n.status() is None:
                if not n.proc.alive():
                    fail("%s exited:\n%s" % (name, n.proc.output()[-3000:]))
                if time.time() > deadline:
                    fail("%s: API not up within %ss\n%s" % (name, timeout, n.proc.output()[-3000:]))
                time.sleep(0.05)

    def wait_all_ready(self, names=None, timeout=30, want=True):
        names = names or [k for k in self.nodes if self.nodes[k].proc.alive()]
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = {k: self.nodes[k].ready() for k in names}
            if all(v == want for v in states.values()):
                return time.time()
            time.sleep(0.05)
        detail = "\n".join("%s: %s" % (k, json.dumps((self.nodes[k].status() or {}).get("reasons"))) for k in names)
        fail("not all %s within %ss:\n%s" % ("ready" if want else "not ready", timeout, detail))
