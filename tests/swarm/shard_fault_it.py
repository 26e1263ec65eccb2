#!/usr/bin/env python3
"""shard_fault_it.py CASE — a shard file damaged under a node is never served (issue 11, item 2).

A seeder (--seed-all) and 4 nodes on a 4-way split of stories260K, on loopback. Node n1's
shard file is damaged; every case then checks that n1 says why (a log line naming the file),
stays alive, gets the swarm back to ready by itself, and that `generate --swarm` gives the
same greedy tokens as single-process `generate`.

Cases:
  stopped_flip   bytes flipped while n1 is stopped: at restart the resume data no longer
                 matches the file (mtime/ctime), it is rehashed, not loaded before joining,
                 "1 of N pieces fail their hash", the bad piece is fetched again
  run_flip       bytes flipped under the running node: noticed within seconds, the stage is
                 released, re-verified, only the bad pieces are fetched, loaded again
  run_truncate   the file truncated to half under the running node: no SIGBUS, noticed,
                 the missing tail is fetched again
  run_delete     the loaded file deleted: noticed, fetched again whole
  run_mmap       bytes changed through another process's shared mapping (no write(), so no
                 inotify event: only mtime/ctime move, at the write fault): noticed by the
                 once-a-second stat
  run_step       bytes changed (through a shared mapping: no inotify event; the stat poll
                 slowed to 60 s with --watch-ms) while n1 runs a long step (--step-delay-us):
                 the step's own check after compute refuses its output ("changed while this
                 step ran", status self.steps_refused), the session fails over to a replica
                 (n1b), greedy tokens equal single-process; n1 re-verifies and loads again
  touch          (item 2) n1's loaded file touched (mtime moves, bytes the same): noticed,
                 re-verified good, loaded again, its resume data bound to the new identity;
                 n1 restarted: loaded before joining, no rehash
  verifying      (item 4) a node started on a fresh cache (no resume data) hashes its
                 5-piece shard with the test-only --hash-delay-ms 600: /swarm/status answers
                 meanwhile with phase `verifying` and self.verify progress (0 < done < total),
                 then the node is loaded
  folder_gone    (item 3) a 2-shard split; n1 starts with piece 0 of 2 in its .part and the
                 only other holder (the seeder) SIGSTOPped; once n1 says "fetching 50%" its
                 shards folder is deleted and the seeder continued: n1 says why ("the folder
                 vanished"), fetches again, ends loaded with the torrent's bytes
  disk_full      (item 3) n1's shards folder is a small tmpfs, filled so the shard does not
                 fit: phase failed with the path, bytes needed and free (log, status JSON),
                 never "fetching"; the filler deleted: it fetches again by itself, ready
  read_only      (item 3) the tmpfs remounted read-only: failed, not writable; remounted
                 read-write: fetched, ready
Cases disk_full and read_only mount a tmpfs (root): they skip with a message where mount
is not permitted.
"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, fail, harness  # noqa: E402

N = 4
N_GEN = 40


def swarm(procs):
    m = S.Model(harness.tmpdir("sw-fault-"), N, source=harness.shared_model())
    sw = S.Swarm(procs, m)
    sw.start("seeder", seed_all=True)
    for k in range(N):
        sw.start("n%d" % k, shard=k, cache_shards=[k])
    sw.wait_api()
    sw.wait_all_ready(timeout=30)
    return m, sw


def shard_file(sw, k):
    return os.path.join(sw.nodes["n%d" % k].cache, "shards", "shard-%d.gguf" % k)


def flip(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(16)
        f.seek(-16, 1)
        f.write(bytes(x ^ 0xFF for x in b))


def same_tokens(procs, m, sw, name):
    ref = P.reference(P.PROMPT, N_GEN)
    c = P.client(procs, m, sw.nodes["seeder"].port, name, P.PROMPT, N_GEN)
    rc = P.wait_exit(c)
    check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
    got = P.client_ids(c)
    check(got == ref, "tokens differ from single-process generate:\n ref %s\n got %s" % (ref, got))
    # the light client left: no node lists it as a departed node (item E)
    deadline = time.time() + 5
    while True:
        left = [x for x in (sw.nodes["n0"].status() or {}).get("nodes", [])
                if not x["live"] and x["shard"] < 0 and not x["seed_all"]]
        if not left or time.time() > deadline:
            break
        time.sleep(0.1)
    check(not left, "a departed light client is still listed: %s" % json.dumps(left))


since_t = [0.0]


def running_fault(do, pattern, what):
    S.node_supported()
    with harness.Procs() as procs:
        m, sw = swarm(procs)
        node = sw.nodes["n1"]
        path = shard_file(sw, 1)
        mark = len(node.proc.output())
        since_t[0] = time.time()
        do(path)
        mt = node.proc.wait_for(r"\[SHARD\] (?:warning: )?shard 1 at \S*shard-1\.gguf changed under the running node \(([^)]*)\)",
                                timeout=10, start=mark)
        check(mt, "n1 never said its file changed")
        print("%s: noticed %.2fs after the fault (%s)" % (what, time.time() - since_t[0], mt.group(1)), file=sys.stderr)
        check(re.search(pattern, mt.group(1)), "reason %r does not match %r" % (mt.group(1), pattern))
        node.proc.wait_for(r"shard 1 loaded", timeout=40, start=mark)
        t_ready = sw.wait_all_ready(timeout=40)
        check(node.proc.alive(), "n1 died:\n" + node.proc.output()[-3000:])
        print("%s: ready again %.2fs after the fault" % (what, t_ready - since_t[0]), file=sys.stderr)
        out = node.proc.output()[mark:]
        check("SIGBUS" not in out and "Bus error" not in out, "no bus error")
        same_tokens(procs, m, sw, "client")
        return out


def case_stopped_flip():
    S.node_supported()
    with harness.Procs() as procs:
        m, sw = swarm(procs)
        node = sw.nodes["n1"]
        node.proc.stop()
        path = shard_file(sw, 1)
        flip(path)
        t0 = time.time()
        new = sw.start("n1", shard=1)  # same cache folder
        sw.wait_api(["n1"])
        new.proc.wait_for(r"changed since its pieces were verified", timeout=20)
        mt = new.proc.wait_for(r"shard 1 at \S+ is corrupt \((\d+) of (\d+) pieces fail their hash\)", timeout=20)
        check(mt and mt.group(1) == "1", "exactly one bad piece reported:\n" + new.proc.output()[-2000:])
        total = int(mt.group(2))
        # the start-up hash says what it found (item 4: hashing progress; one line for a small file)
        new.proc.wait_for(r"\[SHARD\] verified \S+shard-1\.gguf in [\d.]+ s \([^)]*\): %d of %d pieces good"
                          % (total - 1, total), timeout=5)
        new.proc.wait_for(r"shard 1 (downloaded and verified|loaded)", timeout=30)
        t = sw.wait_all_ready(timeout=40)
        print("stopped_flip: ready %.2fs after the restart" % (t - t0), file=sys.stderr)
        out = new.proc.output()
        check("loaded before joining" not in out, "a changed shard was loaded before joining:\n" + out[-2000:])
        same_tokens(procs, m, sw, "client")


def case_run_flip():
    out = running_fault(flip, r"modified|metadata", "run_flip")
    check(re.search(r"1 of \d+ pieces", out), "one bad piece named:\n" + out[-2000:])


def case_run_truncate():
    def trunc(path):
        os.truncate(path, os.path.getsize(path) // 2)
    running_fault(trunc, r"size changed", "run_truncate")


def case_run_mmap():
    import mmap

    def poke(path):
        with open(path, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0)
            off = len(m) // 2
            m[off:off + 16] = bytes(x ^ 0xFF for x in m[off:off + 16])
            m.flush()
            m.close()
    running_fault(poke, r"modified|metadata", "run_mmap")


def case_run_step():
    import mmap
    S.node_supported()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-fault-"), N, source=harness.shared_model())
        sw = S.Swarm(procs, m)
        sw.start("seeder", seed_all=True)
        for k in range(N):
            extra = ["--step-delay-us", "300000", "--watch-ms", "60000"] if k == 1 else []
            sw.start("n%d" % k, shard=k, cache_shards=[k], extra=extra)
        sw.wait_api()
        sw.wait_all_ready(timeout=30)
        node = sw.nodes["n1"]
        mark = len(node.proc.output())
        ref = P.reference(P.PROMPT, N_GEN)
        c = P.client(procs, m, sw.nodes["seeder"].port, "client", P.PROMPT, N_GEN)
        deadline = time.time() + 20
        while ((node.status() or {}).get("pipeline") or {}).get("stage_sessions", 0) < 1:
            check(time.time() < deadline and c.alive(), "the session never reached n1:\n" + c.output()[-2000:])
            time.sleep(0.05)
        # a replica of shard 1 to fail over to, once the session runs on n1 (40 steps of 0.3 s)
        sw.start("n1b", shard=1, cache_shards=[1])
        sw.wait_api(["n1b"])
        sw.nodes["n1b"].proc.wait_for(r"shard 1 loaded", timeout=20)
        time.sleep(0.5)  # n1b's record reaches the client
        check(c.alive(), "the client finished before the fault: make the steps longer")
        path = shard_file(sw, 1)
        with open(path, "r+b") as f:
            mm = mmap.mmap(f.fileno(), 0)
            off = len(mm) // 2
            mm[off:off + 16] = bytes(x ^ 0xFF for x in mm[off:off + 16])
            mm.close()
        t0 = time.time()
        mt = node.proc.wait_for(r"shard 1 at \S*shard-1\.gguf changed while this step ran \(([^)]*)\)", timeout=10,
                                start=mark)
        check(mt, "n1's step check never refused a step:\n" + node.proc.output()[-3000:])
        print("run_step: step refused %.2fs after the fault (%s)" % (time.time() - t0, mt.group(1)), file=sys.stderr)
        check(node.proc.wait_for(r"changed under the running node", timeout=5, start=mark),
              "n1 did not handle the change")
        rc = P.wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = P.client_ids(c)
        check(got == ref, "tokens differ from single-process generate:\n ref %s\n got %s" % (ref, got))
        refused = ((node.status() or {}).get("self") or {}).get("steps_refused", 0)
        check(refused >= 1, "status self.steps_refused is %s" % refused)
        node.proc.wait_for(r"shard 1 loaded", timeout=40, start=mark)
        sw.wait_all_ready(timeout=40)
        check(node.proc.alive(), "n1 died")


def case_touch():
    S.node_supported()
    with harness.Procs() as procs:
        m, sw = swarm(procs)
        node = sw.nodes["n1"]
        path = shard_file(sw, 1)
        mark = len(node.proc.output())
        time.sleep(0.05)
        os.utime(path)  # now: mtime and ctime move
        check(node.proc.wait_for(r"shard 1 at \S*shard-1\.gguf changed under the running node", timeout=10,
                                 start=mark), "n1 never noticed the touch")
        check(node.proc.wait_for(r"every piece still verifies; resume data bound to the file as it is now",
                                 timeout=20, start=mark), "resume data not refreshed:\n" + node.proc.output()[mark:][-2000:])
        node.proc.wait_for(r"shard 1 loaded", timeout=20, start=mark)
        sw.wait_all_ready(timeout=30)
        node.proc.stop()
        new = sw.start("n1", shard=1)  # same cache folder
        sw.wait_api(["n1"])
        new.proc.wait_for(r"shard 1 loaded", timeout=20)
        out = new.proc.output()
        check("loaded before joining" in out and "changed since its pieces were verified" not in out
              and "[SHARD] verified" not in out, "the touched file was hashed again at restart:\n" + out[-2000:])
        sw.wait_all_ready(timeout=30)
        same_tokens(procs, m, sw, "client")


def case_verifying():
    S.node_supported()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-verify-"), 1, source=harness.shared_model())
        sw = S.Swarm(procs, m)
        node = sw.start("n0", shard=0, cache_shards=[0], extra=["--hash-delay-ms", "600"], bootstrap=False,
                        wait=False)
        # the API's port only: the BitTorrent port is printed once the start-up hash is done
        node.api = int(node.proc.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=10).group(1))
        seen, deadline = None, time.time() + 20
        while time.time() < deadline:
            st = node.status() or {}
            me = st.get("self") or {}
            v = me.get("verify")
            if me.get("phase") == "verifying" and v and 0 < v["bytes_done"] < v["bytes_total"]:
                seen = v
                break
            check(me.get("phase") != "loaded", "loaded before any `verifying` status was seen")
            time.sleep(0.05)
        check(seen, "no `verifying` status with progress:\n" + node.proc.output()[-2000:])
        check(seen["path"].endswith("shard-0.gguf") and seen["rate_bps"] >= 0, "verify: %s" % json.dumps(seen))
        print("verifying: %s" % json.dumps(seen), file=sys.stderr)
        check(node.proc.wait_for(r"\[SHARD\] verifying \S+shard-0\.gguf: \d+%", timeout=10), "no progress line")
        check(node.proc.wait_for(r"\[SHARD\] verified \S+shard-0\.gguf in [\d.]+ s \([^)]*\): (\d+) of \1 pieces good",
                                 timeout=20), "no 'verified' line")
        check(node.proc.wait_for(r"shard 0 loaded", timeout=20), "not loaded")
        deadline = time.time() + 10
        while ((node.status() or {}).get("self") or {}).get("phase") != "loaded":
            check(time.time() < deadline, "status never says loaded")
            time.sleep(0.05)


def case_folder_gone():
    import shutil
    import signal
    S.node_supported()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-fault-"), 2, source=harness.shared_model())  # 2 pieces a shard
        sw = S.Swarm(procs, m)
        seeder = sw.start("seeder", seed_all=True)
        for k in (0,):
            sw.start("n%d" % k, shard=k, cache_shards=[k])
        sw.wait_api()
        sw.wait_all_ready(timeout=30, want=False)  # nobody but the seeder has shard 1
        os.kill(seeder.proc.p.pid, signal.SIGSTOP)
        try:
                # the first half of the shard already fetched (a .part the storage hashes at start)
            c1 = m.cache("n1")
            with open(m.shard_path(1), "rb") as f, open(os.path.join(c1, "shards", "shard-1.gguf.part"), "wb") as g:
                size = os.path.getsize(m.shard_path(1))
                g.write(f.read(256 << 10))  # piece 0 of 2; piece 1 still zeros
                g.truncate(size)
            node = sw.start("n1", shard=1, bootstrap=False,
                            extra=["--bootstrap", "127.0.0.1:%d" % sw.nodes["n0"].port])
            part = shard_file(sw, 1) + ".part"
            deadline = time.time() + 20
            while not re.search(r"shard 1 fetching [1-9]", node.proc.output()):
                check(time.time() < deadline, "n1 never started fetching:\n" + node.proc.output()[-2000:])
                time.sleep(0.05)
            time.sleep(0.5)  # DHT lookups and the (stopped) seeder's connection under way
            mark = len(node.proc.output())
            check(os.path.exists(part), "no .part")
            shutil.rmtree(os.path.dirname(part))
        finally:
            os.kill(seeder.proc.p.pid, signal.SIGCONT)
        mt = node.proc.wait_for(r"shard 1 cannot be written: ([^\n]*)", timeout=20, start=mark)
        check(mt, "n1 did not say why:\n" + node.proc.output()[mark:][-3000:])
        print("folder_gone: %s" % mt.group(1), file=sys.stderr)
        check(node.proc.wait_for(r"fetching again", timeout=20, start=mark), "n1 did not fetch again")
        check(node.proc.wait_for(r"shard 1 (downloaded and verified|loaded)", timeout=30, start=mark), "not loaded")
        sw.wait_all_ready(timeout=40)
        with open(shard_file(sw, 1), "rb") as f, open(m.shard_path(1), "rb") as g:
            check(f.read() == g.read(), "n1's shard file differs from the torrent's")
        same_tokens(procs, m, sw, "client")


def case_run_delete():
    running_fault(os.unlink, r"vanished", "run_delete")


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path], capture_output=True, text=True)
    if r.returncode != 0:
        harness.skip("cannot mount a tmpfs at %s (%s): the disk-error cases need root" % (path, r.stderr.strip()))


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


def wait_status(node, pred, what, timeout=20):
    deadline = time.time() + timeout
    s = None
    while time.time() < deadline:
        s = node.status()
        if s and pred(s):
            return s
        time.sleep(0.05)
    fail("%s: not seen within %ss; last status self: %s" % (what, timeout, json.dumps((s or {}).get("self"))))


def disk_fault(what, make_bad, make_good, pattern):
    S.node_supported()
    m = S.Model(harness.tmpdir("sw-disk-"), N, source=harness.shared_model())
    shards = os.path.join(m.root, "n1", "shards")
    mount_tmpfs(shards, "512k")  # shard 1 is ~194 KB
    try:
        with harness.Procs() as procs:
            sw = S.Swarm(procs, m)
            sw.start("seeder", seed_all=True)
            for k in range(N):
                if k != 1:
                    sw.start("n%d" % k, shard=k, cache_shards=[k])
            make_bad(shards)
            node = sw.start("n1", shard=1)  # empty cache: it must fetch shard 1 into the tmpfs
            sw.wait_api()
            mt = node.proc.wait_for(r"\[SHARD\] (?:error: )?shard 1 cannot be written: (\S+shard-1\.gguf\.part): " + pattern +
                                    r" \(needs ([\d.]+ \w?B), ([\d.]+ \w?B) free in (\S+)\)", timeout=20)
            print("%s: %s" % (what, mt.group(0)), file=sys.stderr)
            s = wait_status(node, lambda s: (s.get("self") or {}).get("error"), "self.error in the status")
            e = s["self"]["error"]
            check(s["self"]["phase"] == "failed", "phase failed, not %r" % s["self"]["phase"])
            check(e["path"].endswith("shard-1.gguf.part") and e["bytes_needed"] > 0 and "bytes_free" in e,
                  "status error names the path, bytes needed and free: %s" % json.dumps(e))
            time.sleep(2.5)  # it stays failed (never "fetching 0%" forever) while nothing changed
            s = node.status()
            check(s["self"]["phase"] == "failed", "still failed after 2.5 s: %s" % json.dumps(s["self"]))
            check(node.proc.alive(), "n1 alive")
            t0 = time.time()
            make_good(shards)
            node.proc.wait_for(r"shard 1: \S+ is writable with .* free; fetching again", timeout=10)
            node.proc.wait_for(r"shard 1 loaded", timeout=30)
            t = sw.wait_all_ready(timeout=30)
            print("%s: ready %.2fs after the cause was removed" % (what, t - t0), file=sys.stderr)
            same_tokens(procs, m, sw, "client")
    finally:
        umount(shards)


def case_disk_full():
    def fill(d):
        with open(os.path.join(d, "filler"), "wb") as f:
            f.write(b"\0" * (400 * 1024))
    disk_fault("disk_full", fill, lambda d: os.unlink(os.path.join(d, "filler")), "disk full")


def case_read_only():
    def ro(d):
        subprocess.run(["mount", "-o", "remount,ro", d], check=True)
    def rw(d):
        subprocess.run(["mount", "-o", "remount,rw", d], check=True)
    disk_fault("read_only", ro, rw, r"not writable \(read-only or no permission\)")


if __name__ == "__main__":
    harness.main_cases({k[5:]: v for k, v in globals().items() if k.startswith("case_")})
