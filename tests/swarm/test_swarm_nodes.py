#!/usr/bin/env python3
"""test_swarm_nodes.py CASE — real `shardswarm node` processes on 127.0.0.1.

Cases (issue 6, item 9):
  all_local     seeder + 4 nodes that hold their shards: every node ready; also on a
                synthetic model when `synth` is available
  fetch         3 of 4 nodes miss their shard: fetched from peers, ready with no human step
  copy_in       a node waits without its file (--no-auto-fetch); the file is copied into its
                shards folder while it runs: the swarm becomes ready without a restart
  kill_replace  the only node of a shard is killed: not ready, the reason names that shard;
                an auto spare is re-planned onto it and readiness comes back
  forged        a LOAD_SHARD signed by a foreign key is refused (logged, HTTP 403); a real
                one is accepted and the node fetches and loads the shard
  auto_spread   two `--shard auto` nodes started at the same moment take different shards
  corrupt       a node's own shard is corrupt: never loaded, re-fetched, the log says so
"""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm_it as S  # noqa: E402
from swarm_it import check, fail, harness  # noqa: E402

N = 4


def stories(procs):
    return S.Model(harness.tmpdir("sw-swarm-"), N, source=harness.shared_model())



def all_local_swarm(procs, m):
    """A seeder and N nodes that each hold their shard; returns once every node is ready."""
    sw = S.Swarm(procs, m)
    sw.start("seeder", seed_all=True)
    for k in range(N):
        sw.start("n%d" % k, shard=k, cache_shards=[k])
    sw.wait_api()
    sw.wait_all_ready(timeout=30)
    return sw

def case_all_local():
    S.node_supported()
    models = [("stories260K", None)]
    vocab = os.path.join(harness.SHARED, "vocab", "ggml-vocab-llama-spm.gguf")
    models.append(("synth", ["--preset", "tiny", "--type", "Q8_0", "--seed", "7", "--vocab", vocab, "-t", "2"]))
    for label, synth in models:
        with harness.Procs() as procs:
            if synth is None:
                m = stories(procs)
            else:
                try:
                    m = S.Model(harness.tmpdir("sw-swarm-synth-"), N, synth=synth)
                except SystemExit as e:
                    if e.code == harness.SKIP:
                        print("note: synthetic model skipped (synth not available)", file=sys.stderr)
                        continue
                    raise
            sw = S.Swarm(procs, m)
            sw.start("seeder", seed_all=True)
            t0 = time.time()
            for k in range(N):
                sw.start("n%d" % k, shard=k, cache_shards=[k])
            sw.wait_api()
            t = sw.wait_all_ready(timeout=30)
            print("%s: %d nodes + seeder ready %.2fs after start" % (label, N, t - t0), file=sys.stderr)
            for k in range(N):
                out = sw.nodes["n%d" % k].proc.output()
                check(re.search(r"\[SHARD\] shard %d loaded before joining \(layers \d+\S\d+, .*shard-%d\.gguf" % (k, k), out),
                      "n%d: no 'loaded before joining' line:\n%s" % (k, out[-2000:]))
                check("[READY]" in out, "n%d never printed [READY]" % k)
            s = sw.nodes["n0"].status()
            check(s["n_shards"] == N and len(s["shards"]) == N, "status lists every shard")
            for sh in s["shards"]:
                check(sh["loaded"] >= 1 and sh["best"], "shard %d has a best loaded node" % sh["shard"])
            r = harness.run([harness.BIN, "status", "--api", str(sw.nodes["n1"].api)])
            check(r.returncode == 0 and "READY" in r.stdout, "status table says READY:\n" + r.stdout + r.stderr)


def case_fetch():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        sw.start("n0", shard=0, cache_shards=[0])
        for k in range(1, N):
            sw.start("n%d" % k, shard=k)  # nothing local: fetch from peers
        sw.wait_api()
        sw.wait_all_ready(timeout=60)
        for k in range(1, N):
            out = sw.nodes["n%d" % k].proc.output()
            check(re.search(r"shard %d not found at .*shard-%d\.gguf; fetching from the swarm" % (k, k), out),
                  "n%d: no 'not found ... fetching' line:\n%s" % (k, out[-2000:]))
            check(os.path.exists(os.path.join(sw.nodes["n%d" % k].cache, "shards", "shard-%d.gguf" % k)),
                  "n%d: shard file not on disk after the fetch" % k)


def case_copy_in():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        first = sw.start("n0", shard=0, cache_shards=[0])
        sw.boot = first.port
        for k in range(1, N - 1):
            sw.start("n%d" % k, shard=k, cache_shards=[k])
        last = sw.start("n%d" % (N - 1), shard=N - 1, extra=["--no-auto-fetch"])
        sw.wait_api()
        # not ready, and the reason names the missing shard and what its node does
        deadline = time.time() + 20
        reason = ""
        while time.time() < deadline:
            s = sw.nodes["n0"].status() or {}
            reason = " | ".join(s.get("reasons") or [])
            if "shard %d: no node has it loaded" % (N - 1) in reason and "LOAD_SHARD" in reason:
                break
            time.sleep(0.1)
        check("shard %d: no node has it loaded" % (N - 1) in reason, "reason names shard %d: %r" % (N - 1, reason))
        check(not sw.nodes["n0"].ready(), "not ready while shard %d is missing" % (N - 1))
        dst = os.path.join(last.cache, "shards", "shard-%d.gguf" % (N - 1))
        tmp = dst + ".copying"
        import shutil
        shutil.copyfile(m.shard_path(N - 1), tmp)
        t0 = time.time()
        os.rename(tmp, dst)  # appears at once, as `cp` then `mv` would
        t = sw.wait_all_ready(timeout=10)
        print("copy-in: all %d nodes ready %.3fs after the file appeared" % (N, t - t0), file=sys.stderr)
        check(t - t0 < 5, "ready within 5 s of the copy (took %.2fs)" % (t - t0))
        out = last.proc.output()
        check("appeared at" in out and "shard %d loaded" % (N - 1) in out, "copy noticed and loaded:\n" + out[-2000:])


def case_kill_replace():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = all_local_swarm(procs, m)
        spare = sw.start("spare", shard="auto")
        sw.wait_api(["spare"])
        deadline = time.time() + 30
        x = -1
        while time.time() < deadline:
            s = spare.status() or {}
            me = s.get("self") or {}
            if me.get("phase") == "loaded":
                x = me.get("shard")
                break
            time.sleep(0.1)
        check(x >= 0, "the auto spare loaded a shard:\n" + spare.proc.output()[-2000:])
        victim = (x + 1) % N
        sw.nodes["n%d" % victim].proc.kill9()
        t_kill = time.time()
        observer = sw.nodes["n%d" % ((victim + 2) % N if (victim + 2) % N != x else (victim + 3) % N)]
        saw_reason = None
        deadline = time.time() + 10
        while time.time() < deadline and not saw_reason:
            s = observer.status() or {}
            for r in s.get("reasons") or []:
                if r.startswith("shard %d:" % victim):
                    saw_reason = r
            time.sleep(0.02)
        check(saw_reason, "after the kill some status names shard %d as blocking" % victim)
        print("kill: '%s' seen %.2fs after kill -9" % (saw_reason, time.time() - t_kill), file=sys.stderr)
        alive = [k for k in sw.nodes if k != "n%d" % victim]
        t = sw.wait_all_ready(names=alive, timeout=40)
        print("kill: ready again %.2fs after the kill (spare moved to shard %d)" % (t - t_kill, victim), file=sys.stderr)
        s = spare.status()
        check(s["self"]["shard"] == victim, "the spare now holds shard %d (has %r)" % (victim, s["self"]["shard"]))
        check("re-planning" in spare.proc.output(), "the spare logged its re-planning")


def case_forged():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        for k in range(N - 1):
            sw.start("n%d" % k, shard=k, cache_shards=[k])
        idle = sw.start("idle", shard=0, extra=["--no-auto-fetch"])
        sw.wait_api()
        time.sleep(0.5)
        idle_id = idle.status()["node_id"]
        foreign = os.path.join(m.root, "foreign.key")
        harness.run([harness.BIN, "keygen", "-o", foreign], check_rc=0)
        # forged: foreign key, sent through the target's own API
        r = harness.run([harness.BIN, "load-shard", "--api", str(idle.api), "--node", idle_id, "--shard", str(N - 1),
                         "--key", foreign])
        check(r.returncode == 1 and "foreign key" in r.stderr, "forged command refused: rc=%d %s" % (r.returncode, r.stderr))
        idle.proc.wait_for(r"refused LOAD_SHARD from the local API: signed by a foreign key", timeout=5)
        # forged and relayed: sent through another node, refused there too
        r = harness.run([harness.BIN, "load-shard", "--api", str(sw.nodes["n0"].api), "--node", idle_id, "--shard",
                         str(N - 1), "--key", foreign])
        check(r.returncode == 1, "forged command via another node refused")
        check(not sw.nodes["n0"].ready(), "still not ready")
        # the real owner key: forwarded through n0 to the idle node, which fetches and loads
        r = harness.run([harness.BIN, "load-shard", "--api", str(sw.nodes["n0"].api), "--node", idle_id, "--shard",
                         str(N - 1), "--key", m.owner_key])
        check(r.returncode == 0, "owner-signed command accepted: %s %s" % (r.stdout, r.stderr))
        idle.proc.wait_for(r"accepted LOAD_SHARD from peer .*: load shard %d" % (N - 1), timeout=10)
        sw.wait_all_ready(timeout=30)


def case_auto_spread():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        sw.wait_api()
        a = sw.start("a", shard="auto")
        b = sw.start("b", shard="auto")
        sw.wait_api(["a", "b"])
        deadline = time.time() + 30
        stable_since, last = None, None
        while time.time() < deadline:
            sa, sb = a.status() or {}, b.status() or {}
            pair = ((sa.get("self") or {}).get("shard", -1), (sb.get("self") or {}).get("shard", -1))
            loaded = (sa.get("self") or {}).get("phase") == "loaded" and (sb.get("self") or {}).get("phase") == "loaded"
            if pair != last:
                last, stable_since = pair, time.time()
            if loaded and pair[0] >= 0 and pair[1] >= 0 and pair[0] != pair[1] and time.time() - stable_since > 2:
                print("auto: a took shard %d, b took shard %d" % pair, file=sys.stderr)
                return
            time.sleep(0.1)
        fail("two auto nodes did not settle on different shards: last %r\n--- a ---\n%s\n--- b ---\n%s" % (
            last, a.proc.output()[-1500:], b.proc.output()[-1500:]))


def case_corrupt():
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        for k in range(N - 1):
            sw.start("n%d" % k, shard=k, cache_shards=[k])
        cache = m.cache("bad", [N - 1])
        p = os.path.join(cache, "shards", "shard-%d.gguf" % (N - 1))
        with open(p, "r+b") as f:
            f.seek(os.path.getsize(p) // 2)
            f.write(b"\xde\xad\xbe\xef" * 4)
        sw.start("bad", shard=N - 1, cache_shards=[])
        sw.wait_api()
        out = sw.nodes["bad"].proc.wait_for(r"shard %d at .* is corrupt" % (N - 1), timeout=10)
        check(out, "corrupt shard reported")
        sw.wait_all_ready(timeout=30)
        o = sw.nodes["bad"].proc.output()
        check("loaded before joining" not in o, "a corrupt shard is never loaded before joining")


def case_magnet():
    """A node given only a magnet link gets the metadata from peers (BEP 9), then its shard."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        for k in range(N - 1):
            sw.start("n%d" % k, shard=k, cache_shards=[k])
        sw.wait_api()
        torrent, m.torrent = m.torrent, "magnet:?xt=urn:btih:" + m.info_hash
        mag = sw.start("mag", shard=N - 1)
        m.torrent = torrent
        sw.wait_api(["mag"])
        sw.wait_all_ready(timeout=30)
        s = mag.status()
        check(s["peers"] >= N, "the magnet node maps all its peers to nodes (peers=%r)" % s["peers"])
        check("waiting for the model's metadata" in mag.proc.output(), "it said it waited for the metadata")


def case_diagnose():
    """`diagnose` explains a blocked swarm (exit 1, reason, exact fix, local file states) and
    says READY (exit 0) once the fix is applied."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        for k in range(N - 1):
            sw.start("n%d" % k, shard=k, cache_shards=[k])
        idle = sw.start("idle", shard=N - 1, extra=["--no-auto-fetch"])
        sw.wait_api()
        # a corrupt copy of shard 0 and a partial shard 1 in the idle node's folder
        shards = os.path.join(idle.cache, "shards")
        import shutil
        shutil.copyfile(m.shard_path(0), os.path.join(shards, "shard-0.gguf"))
        with open(os.path.join(shards, "shard-0.gguf"), "r+b") as f:
            f.seek(1000)
            f.write(b"\0garbage\0")
        with open(m.shard_path(1), "rb") as f:
            data = f.read()
        with open(os.path.join(shards, "shard-1.gguf.part"), "wb") as f:
            f.write(data[: len(data) // 3])
        deadline = time.time() + 15
        while time.time() < deadline:
            st = idle.status() or {}
            if st.get("discovered") == N and st.get("peers", 0) >= N:
                break
            time.sleep(0.1)
        args = [harness.BIN, "diagnose", "--model", m.torrent, "--cache", idle.cache, "--api", str(idle.api),
                "--bootstrap", "127.0.0.1:%d" % sw.boot, "--owner-key", m.owner_key]
        r = harness.run(args)
        out = r.stdout
        check(r.returncode == 1, "diagnose exits 1 while not ready (rc %d)\n%s%s" % (r.returncode, out, r.stderr))
        check(re.search(r"shard 0\s+corrupt\s+\S+shard-0\.gguf", out), "corrupt file reported:\n" + out)
        check(re.search(r"shard 1\s+partial", out), "partial file reported:\n" + out)
        check(re.search(r"shard 3\s+missing\s+\S+shard-3\.gguf", out), "missing file with its path:\n" + out)
        check(re.search(r"shard 0\s+corrupt\s+\S+\s+\(1 of \d+ pieces fail their hash", out), "bad pieces counted:\n" + out)
        check(re.search(r"shard 2\s+not held here, held elsewhere \(.*1 live node\(s\) have it loaded\)", out),
              "another node's shard is not 'missing':\n" + out)
        check("answered a DHT ping" in out, "DHT reachability:\n" + out)
        check("shard %d: no node has it loaded" % (N - 1) in out, "blocking reason:\n" + out)
        fix = re.search(r"fix: (shardswarm load-shard .*)", out)
        check(fix, "an exact load-shard fix:\n" + out)
        # apply the fix exactly as printed
        r2 = harness.run([harness.BIN] + fix.group(1).split()[1:])
        check(r2.returncode == 0, "the printed fix works: %s %s" % (r2.stdout, r2.stderr))
        sw.wait_all_ready(timeout=30)
        # the swarm is ready, but a shard file here is corrupt: never READY, exit 1
        r = harness.run(args)
        check(r.returncode == 1 and re.search(r"NOT READY: this machine's shard 0 is corrupt \(1 of \d+ pieces fail their hash", r.stdout)
              and "\nREADY" not in r.stdout, "diagnose with a corrupt local shard:\n" + r.stdout)
        shutil.copyfile(m.shard_path(0), os.path.join(shards, "shard-0.gguf"))
        r = harness.run(args)
        check(r.returncode == 0 and "READY" in r.stdout, "diagnose exits 0 when ready:\n" + r.stdout)


def _bdecode(b, i=0):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        out = [] if c == b"l" else {}
        while b[i:i + 1] != b"e":
            if c == b"l":
                v, i = _bdecode(b, i)
                out.append(v)
            else:
                k, i = _bdecode(b, i)
                v, i = _bdecode(b, i)
                out[k] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


def _bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, dict):
        return b"d" + b"".join(_bencode(k) + _bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(v)


class _Wire:
    """A bare BitTorrent peer speaking just enough BEP 3 + BEP 10 for the test."""

    def __init__(self, port, info_hash):
        import socket
        import struct
        self.struct = struct
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        reserved = bytearray(8)
        reserved[5] |= 0x10  # BEP 10
        self.s.sendall(b"\x13BitTorrent protocol" + bytes(reserved) + bytes.fromhex(info_hash) + b"-XX0001-" + os.urandom(12))
        self.buf = b""
        self._need(68)
        self.buf = self.buf[68:]

    def _need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("closed")
            self.buf += d

    def send_ext(self, ext_id, payload):
        self.s.sendall(self.struct.pack(">IBB", len(payload) + 2, 20, ext_id) + payload)

    def next_ext(self, timeout=5):
        """The next extended message as (ext_id, payload); other messages are skipped."""
        self.s.settimeout(timeout)
        while True:
            self._need(4)
            (n,) = self.struct.unpack(">I", self.buf[:4])
            self._need(4 + n)
            msg, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            if n >= 2 and msg[0] == 20:
                return msg[1], msg[2:]


def case_impersonate():
    """A peer that replays another node's handshake record cannot prove that node's key: it is
    refused and disconnected; the node keeps its true view."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = S.Swarm(procs, m)
        a = sw.start("a", shard=0, cache_shards=[0])
        sw.boot = a.port
        b = sw.start("b", shard=1, cache_shards=[1])
        sw.wait_api()
        # 1. read b's handshake record as any peer can
        wb = _Wire(b.port, m.info_hash)
        wb.send_ext(0, _bencode({b"m": {b"sw_swarm": 3}}))
        while True:
            eid, payload = wb.next_ext()
            if eid == 0:
                hs, _ = _bdecode(payload)
                if b"sw_cap" in hs:
                    break
        b_record = hs[b"sw_cap"]
        # 2. present it to a as if we were b
        wa = _Wire(a.port, m.info_hash)
        wa.send_ext(0, _bencode({b"m": {b"sw_swarm": 7}, b"sw_cap": b_record}))
        a_ext, challenge = None, None
        deadline = time.time() + 5
        while time.time() < deadline and challenge is None:
            eid, payload = wa.next_ext()
            if eid == 0:
                a_ext = _bdecode(payload)[0].get(b"m", {}).get(b"sw_swarm")
            elif eid == 7 and payload[:1] == b"H":
                challenge = payload[1:]
        check(challenge is not None and len(challenge) == 32 and a_ext, "a challenged the claimed identity")
        b_id = bytes.fromhex(b.status()["node_id"])
        wa.send_ext(a_ext, b"V" + b_id + bytes(64))  # cannot sign: forged proof
        a.proc.wait_for(r"failed to prove its node id \(bad signature\); closing", timeout=5)
        closed = False
        try:
            while True:
                wa.next_ext(timeout=3)
        except (EOFError, OSError):
            closed = True
        check(closed, "the impostor's connection was closed")
        st = a.status()
        check(st["peers"] == 1, "a still counts exactly one proven peer (b), has %r" % st["peers"])


def case_restart():
    """kill -9 a node, start it again on the same cache: it loads its shard before joining
    (resume data from its first run), its new records outrank the dead ones, and every node
    is ready again."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = all_local_swarm(procs, m)
        old = sw.nodes["n1"]
        old_id = old.status()["node_id"]
        old.proc.kill9()
        others = ["seeder", "n0", "n2", "n3"]
        sw.wait_all_ready(names=others, timeout=10, want=False)
        t0 = time.time()
        new = sw.start("n1", shard=1)  # same cache folder, no copy: the file is already there
        sw.wait_api(["n1"])
        sw.wait_all_ready(timeout=20)
        print("restart: ready again %.2fs after the restart" % (time.time() - t0), file=sys.stderr)
        check(new.status()["node_id"] == old_id, "same node id after the restart (key kept in the cache)")
        check("shard 1 loaded before joining" in new.proc.output(), "loaded before joining:\n" + new.proc.output()[-1500:])
        time.sleep(0.5)  # a readiness loss is logged once it lasts 300 ms
        check("no longer ready" not in new.proc.output(), "a restarting node logs no false readiness loss:\n" +
              new.proc.output()[-1500:])


def case_netloss():
    """A node that stops answering (SIGSTOP: its connections stay open, nothing flows) is
    declared departed by keep-alive timeout within seconds; when it comes back (SIGCONT) it
    still holds its shard and rejoins: ready again without a restart."""
    S.node_supported()
    with harness.Procs() as procs:
        m = stories(procs)
        sw = all_local_swarm(procs, m)
        victim = sw.nodes["n2"]
        victim.proc.signal(signal.SIGSTOP)
        t0 = time.time()
        others = ["seeder", "n0", "n1", "n3"]
        sw.wait_all_ready(names=others, timeout=15, want=False)
        t1 = time.time()
        reasons = sw.nodes["n0"].status()["reasons"]
        check(any(r.startswith("shard 2:") for r in reasons), "the reason names shard 2: %r" % reasons)
        print("netloss: departure noticed %.2fs after the node went silent" % (t1 - t0), file=sys.stderr)
        check(t1 - t0 < 8, "departure noticed within 8 s (took %.2fs)" % (t1 - t0))
        victim.proc.signal(signal.SIGCONT)
        t2 = time.time()
        sw.wait_all_ready(timeout=20)
        print("netloss: ready again %.2fs after the node came back" % (time.time() - t2), file=sys.stderr)
        check("loaded before joining" in victim.proc.output(), "it kept its shard")
        check(victim.proc.output().count("loaded") >= 1, "no reload needed")


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}

if __name__ == "__main__":
    harness.main_cases(CASES)
