#!/usr/bin/env python3
"""drain_it.py CASE — the owner-signed DRAIN command across real node processes on 127.0.0.1.

Cases:
  drain   4 nodes on a 4-way split of stories260K plus a replica of shard 2, slow stages
          (--step-delay-us); a client generates 200 tokens; `shardswarm drain` of the node
          serving shard 2 mid-generation: the session fails over, the client gets the same
          200 tokens as single-process `generate`, exit 0; the drained node says phase
          "drained", not loaded, keeps its shard file (and /metrics and `shardswarm status`
          say drained); draining it again is a no-op; a DRAIN of the replica sent through
          the drained node's API is forwarded: the swarm is not ready and the reason names
          shard 2 and the owner's drain; a foreign-key or unsigned DRAIN is refused (403,
          naming why); a LOAD_SHARD of shard 2 to a drained node makes the swarm ready again
          and a new client generates through it.
  flags   `shardswarm drain` flag validation: missing/bad flags exit 2 naming the flag, a
          missing key file exits 1 naming it.
"""
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402


def bstr(b):
    return str(len(b)).encode() + b":" + b


def drain_cli(api, node_id, key):
    return harness.run([harness.BIN, "drain", "--api", str(api), "--node", node_id, "--owner-key", key], timeout=30)


def wait_until(what, fn, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    harness.fail("timed out after %ss waiting for %s" % (timeout, what))


def metrics(api):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % api, timeout=5) as r:
        return r.read().decode()


def case_drain():
    S.node_supported()
    with harness.Procs() as procs:
        m = P.stories()
        nodes, boot = P.start_swarm(procs, m, replicas=[2], first_extra=["--step-delay-us", "5000"], api=True)
        api = {k: S.Node(v.proc, v.port, v.api, None) for k, v in nodes.items()}
        ref = P.reference(P.PROMPT, P.N_GEN)
        c = P.client(procs, m, boot, "client", P.PROMPT, P.N_GEN)
        victim = P.serving_shard2(nodes, c)
        survivor = "r2" if victim == "n2" else "n2"
        deadline = time.time() + 60
        while len(P.client_ids(c)) < 40 and time.time() < deadline and c.alive():
            time.sleep(0.01)
        n_before = len(P.client_ids(c))
        check(c.alive() and n_before < P.N_GEN, "generation ended before the drain (%d tokens)" % n_before)
        vid = api[victim].status()["node_id"]
        sid = api[survivor].status()["node_id"]

        # 1. drain the node serving shard 2, mid-generation
        t0 = time.time()
        r = drain_cli(nodes[victim].api, vid, m.owner_key)
        check(r.returncode == 0, "DRAIN refused: rc %d %s %s" % (r.returncode, r.stdout, r.stderr))
        rc = P.wait_exit(c)
        check(rc == 0, "client failed after the drain (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = P.client_ids(c)
        check(got == ref, "tokens differ after the drain:\n ref %s\n got %s" % (ref[:40], got[:40]))
        check(re.search(r"stage 2 of 4 opened", nodes[survivor].proc.output()) is not None, "the replica never took over")
        vp = nodes[victim].proc
        vp.wait_for(r"\[SHARD\] shard 2 drained by the owner's command .*sessions handed over", timeout=10)
        vp.wait_for(r"released the compute stage", timeout=10)
        print("drain: %s drained after %d tokens; %d identical tokens; finished %.2fs later" %
              (victim, n_before, len(got), time.time() - t0), file=sys.stderr)
        st = wait_until("phase drained", lambda: (lambda s: s if s and s["self"]["phase"] == "drained" else None)(
            api[victim].status()))
        check(st["self"]["shard"] == 2, "drained node's shard: %r" % st["self"])
        me = [n for n in st.get("nodes", []) if n.get("self")]
        check(not me or (me[0]["loaded"] is False and me[0]["phase"] == "drained"), "own record: %r" % me)
        shard_file = os.path.join(m.root, victim, "shards", "shard-2.gguf")
        check(os.path.getsize(shard_file) == os.path.getsize(m.shard_path(2)), "the drained node lost its file")
        check('shardswarm_node_phase{phase="drained"} 1' in metrics(nodes[victim].api), "/metrics: phase not drained")
        r = harness.run([harness.BIN, "status", "--api", str(nodes[victim].api)], timeout=30)
        check("drained" in r.stdout, "`shardswarm status` does not say drained:\n%s" % r.stdout)
        # the others see it drained too, and the swarm stays ready through the replica
        wait_until("n0 to see the drain", lambda: any(n["phase"] == "drained" for n in (api["n0"].status() or {}).get("nodes", [])))
        check(api["n0"].ready(), "swarm not ready with the replica still serving shard 2")
        check(vp.alive(), "the drained node exited")

        # 2. draining a drained node: a no-op
        r = drain_cli(nodes[victim].api, vid, m.owner_key)
        check(r.returncode == 0 and "already drained" in r.stdout, "second drain: rc %d %s %s" % (r.returncode, r.stdout, r.stderr))
        vp.wait_for(r"already drained; nothing to do", timeout=10)

        # 3. forged and unsigned DRAINs are refused, naming why
        foreign = os.path.join(m.root, "foreign.key")
        harness.run([harness.BIN, "keygen", "-o", foreign], check_rc=0)
        r = drain_cli(nodes[survivor].api, sid, foreign)
        check(r.returncode == 1 and "403" in r.stderr and "foreign key" in r.stderr,
              "foreign-key drain: rc %d %s" % (r.returncode, r.stderr))
        ih = bytes.fromhex(api[survivor].status()["info_hash"])
        body = (b"d" + bstr(b"h") + bstr(ih) + bstr(b"n") + bstr(os.urandom(16)) + bstr(b"o") +
                bstr(bytes.fromhex(st["owner_key"])) + bstr(b"t") + bstr(b"drain") + bstr(b"to") +
                bstr(bytes.fromhex(sid)) + bstr(b"ts") + b"i%de" % int(time.time()) + b"e")
        code, text = api[survivor].post("/swarm/drain", (b"d" + bstr(b"c") + bstr(body) + b"e").hex().encode())
        check(code == 403 and "unsigned" in text, "unsigned drain: %d %s" % (code, text))
        check(api["n0"].ready(), "a refused drain changed the swarm")

        # 4. drain the replica too, sent through the drained node's API (forwarded)
        r = drain_cli(nodes[victim].api, sid, m.owner_key)
        check(r.returncode == 0 and "forwarded" in r.stdout, "forwarded drain: rc %d %s %s" % (r.returncode, r.stdout, r.stderr))
        nodes[survivor].proc.wait_for(r"shard 2 drained by the owner's command", timeout=15)

        def not_ready():
            s = api["n0"].status()
            if not s or s.get("ready"):
                return None
            rs = [x for x in s.get("reasons", []) if x.startswith("shard 2:")]
            return rs[0] if rs and "drained by the owner" in rs[0] else None
        reason = wait_until("the swarm not ready naming shard 2", not_ready)
        check(len(api["n0"].status()["reasons"]) == 1, "other shards block: %r" % api["n0"].status()["reasons"])
        print("drain: both shard-2 nodes drained: %s" % reason, file=sys.stderr)

        # 4b. the drained state survives a restart: the replica, stopped and started again on
        # the same cache, comes back drained (not loading its shard) and the swarm stays not ready
        nodes[survivor].proc.stop()
        check(os.path.exists(os.path.join(m.root, survivor, "drained")), "no drained marker in the replica's cache")
        again = P.start_node(procs, m, survivor + "b", 2, boot, ["--cache", os.path.join(m.root, survivor)],
                             api=True)
        again.proc.wait_for(r"drained by the owner's command before this start", timeout=30)
        st2 = wait_until("the restarted replica drained", lambda: (lambda x: x if x and x["self"]["phase"] == "drained"
                                                                   else None)(S.Node(again.proc, again.port, again.api,
                                                                                      None).status()))
        check(st2["node_id"] == sid and st2["self"]["shard"] == 2, "restarted replica: %r" % st2["self"])
        check(not re.search(r"\[SHARD\] shard 2 loaded", again.proc.output()), "the restarted replica loaded its shard")
        check(not api["n0"].ready(), "the swarm is ready although both shard-2 nodes are drained")

        # 5. LOAD_SHARD of shard 2 to a drained node brings the swarm back
        r = harness.run([harness.BIN, "load-shard", "--api", str(nodes["n0"].api), "--node", vid, "--shard", "2",
                         "--key", m.owner_key], timeout=30)
        check(r.returncode == 0, "LOAD_SHARD refused: %s %s" % (r.stdout, r.stderr))
        vp.wait_for(r"leaving the drained state", timeout=15)
        check(not os.path.exists(os.path.join(m.root, victim, "drained")), "the drained marker outlived LOAD_SHARD")
        wait_until("the swarm ready again", lambda: api["n0"].ready() and api[victim].status()["self"]["phase"] == "loaded")
        ref2 = P.reference(P.PROMPT, 20)
        c2 = P.client(procs, m, boot, "client2", P.PROMPT, 20)
        rc = P.wait_exit(c2)
        check(rc == 0 and P.client_ids(c2) == ref2, "generation after reloading: rc %s\n%s" % (rc, c2.output()[-2000:]))
        check(again.proc.alive() and S.Node(again.proc, again.port, again.api, None).status()["self"]["phase"] == "drained",
              "the other drained node (restarted) did not stay drained")
        print("drain: LOAD_SHARD brought %s back; swarm ready; 20 tokens identical" % victim, file=sys.stderr)


def case_flags():
    d = harness.tmpdir("sw-drain-flags-")
    key = os.path.join(d, "owner.key")
    harness.run([harness.BIN, "keygen", "-o", key], check_rc=0)
    nid = "ab" * 32
    for args, flag in (([], "--node"), (["--node", nid], "--owner-key"), (["--node", "xyz", "--owner-key", key], "--node"),
                       (["--node", nid, "--owner-key"], "--owner-key"), (["--bogus"], "--bogus")):
        r = harness.run([harness.BIN, "drain"] + args, timeout=10)
        check(r.returncode == 2 and flag in r.stderr, "drain %s: rc %d %s" % (args, r.returncode, r.stderr))
    missing = os.path.join(d, "missing.key")
    r = harness.run([harness.BIN, "drain", "--node", nid, "--owner-key", missing, "--api", "1"], timeout=10)
    check(r.returncode == 1 and missing in r.stderr, "missing key: rc %d %s" % (r.returncode, r.stderr))
    r = harness.run([harness.BIN, "drain", "--help"], timeout=10)
    check(r.returncode == 0 and "--owner-key" in r.stdout, "--help")


if __name__ == "__main__":
    harness.main_cases({"drain": case_drain, "flags": case_flags})
