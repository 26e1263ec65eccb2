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
"""
import os
import re
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


def case_run_delete():
    running_fault(os.unlink, r"vanished", "run_delete")


if __name__ == "__main__":
    harness.main_cases({k[5:]: v for k, v in globals().items() if k.startswith("case_")})
