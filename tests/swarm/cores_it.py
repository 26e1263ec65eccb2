#!/usr/bin/env python3
"""cores_it.py — nodes of one machine share its cores (the core lease, docs/infer.md).

Four `shardswarm node` processes on a 4-way split of stories260K, each with 2 threads and
`--machine-cores 2 --cores-dir D` (a folder of this test): 4 concurrent sessions, each
equal to single-process generation; the lock files are in D; /swarm/status shows the lease
and the "pipeline" counters of every stage.
Then the flag's errors: `--machine-cores 0` is a usage error naming the flag, and a lease
folder that cannot be made is a warning (the node computes on with its own threads).
"""
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

PROMPTS = ["1 403 407 261 378", "1 306 286 432", "1 350 432 306 286 266", "1 285 266 350"]


def status(api):
    with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % api, timeout=10) as r:
        return json.loads(r.read())


def main():
    S.node_supported()
    d = harness.tmpdir("sw-cores-")
    lease = ["--threads", "2", "--machine-cores", "2", "--cores-dir", d]
    with harness.Procs() as procs:
        m = P.stories()
        nodes, boot = P.start_swarm(procs, m, first_extra=lease, api=True)
        for n in nodes.values():
            check("cores this machine's nodes share (lease %s)" % d in n.proc.output(),
                  "no lease line:\n%s" % n.proc.output()[-1500:])
        check(sorted(os.listdir(d)) == ["core-0", "core-1", "waiting"], "lease folder: %s" % os.listdir(d))
        cs = [P.client(procs, m, boot, "c%d" % i, p, 40) for i, p in enumerate(PROMPTS)]
        for i, c in enumerate(cs):
            rc = P.wait_exit(c)
            check(rc == 0, "client %d failed (rc %s):\n%s" % (i, rc, c.output()[-3000:]))
            ref = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "--prompt-ids", PROMPTS[i],
                               "-n", "40", "--temp", "0", "--ids", "--ignore-eos", "-t", "1"], timeout=60, check_rc=0)
            got = P.client_ids(c)
            check(got == ref.stdout.split(), "session %d differs:\n ref %s\n got %s" % (i, ref.stdout.split(), got))
        time.sleep(1.2)  # the status JSON is rebuilt about every second
        for name, n in nodes.items():
            st = status(n.api)
            cl = st["self"].get("core_lease")
            check(cl and cl["budget"] == 2 and cl["dir"] == d and cl["waits"] >= 0, "%s core_lease: %s" % (name, cl))
            pl = st.get("pipeline") or {}
            # every stage saw the 4 sessions and computed their 4 x (prompt + 40) positions
            check(pl.get("sessions_opened", 0) >= 4 and pl.get("compute_steps", 0) > 0 and
                  pl.get("tokens_computed", 0) >= 4 * 40 and pl.get("compute_seconds", -1) >= 0 and
                  pl.get("kv_bytes", -1) >= 0 and pl.get("tokens_generated", -1) == 0,
                  "%s pipeline counters: %s" % (name, pl))
            check("bt" in st and st["bt"]["uploaded_bytes"] >= 0, "%s bt section: %s" % (name, st.get("bt")))
        # flag errors
        r = harness.run([harness.BIN, "node", "--model", m.torrent, "--cache", d, "--machine-cores", "0"], timeout=30)
        check(r.returncode == 2 and "--machine-cores" in r.stderr, "--machine-cores 0: rc %s %s" % (r.returncode, r.stderr))
        bad = P.start_node(procs, m, "bad", 1, boot, ["--machine-cores", "2", "--cores-dir", "/dev/null/no"])
        bad.proc.wait_for(r"shard 1 loaded", timeout=60)
        check("no core sharing with other processes" in bad.proc.output() and "/dev/null/no" in bad.proc.output(),
              "no warning for a bad lease folder:\n%s" % bad.proc.output()[-1500:])
    print("cores: 4 nodes x 2 threads on a 2-core lease, 4 concurrent sessions identical to single-process",
          file=sys.stderr)


if __name__ == "__main__":
    harness.main(main)
