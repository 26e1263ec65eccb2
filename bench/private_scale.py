"""private_scale.py MODEL.gguf — a private swarm at real shape (docs/protocol.md, "Real scale").

MODEL is split in 2 shards. The same run happens twice, as a plain swarm and as a private
swarm (--swarm-key):
  - a seeder holds both shards;
  - two nodes start with none and fetch theirs;
  - `generate --swarm` makes PRIV_SCALE_N tokens (default 32, greedy).
It prints the fetch time and rate, whether the tokens are equal, and the decode rate. Each
token crosses 3 pipeline hops (entry -> shard 0 -> shard 1 -> entry), so the decode rates
show the record layer's cost per token at that hidden size.
e.g. shardswarm synth --preset llama2-7b --type Q4_0 --layers 4 -o l7b4.gguf
     SW_BIN=build/shardswarm python3 bench/private_scale.py l7b4.gguf
"""
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "net"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "swarm"))
import pipeline_it as P  # noqa: E402
import private_it as PR  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import harness  # noqa: E402

N = int(os.environ.get("PRIV_SCALE_N", "32"))
PROMPT = "1 450 4203 931 263 931"


def one(m, key):
    with harness.Procs() as procs:
        tag = "priv" if key else "plain"
        n0, port0, _ = PR.node(procs, m, tag + "0", key, shards=(0, 1), extra=["--seed-all"])
        t0 = time.time()
        n1, _, c1 = PR.node(procs, m, tag + "1", key, extra=["--shard", "1"], boot=port0)
        n2, _, c2 = PR.node(procs, m, tag + "2", key, extra=["--shard", "0"], boot=port0)
        n1.wait_for(r"shard 1 loaded", timeout=600)
        n2.wait_for(r"shard 0 loaded", timeout=600)
        t_fetch = time.time() - t0
        nbytes = os.path.getsize(m.shard_path(0)) + os.path.getsize(m.shard_path(1))
        c = P.client(procs, m, port0, "client-" + tag, PROMPT, N, ["--swarm-key", key] if key else [])
        rc = P.wait_exit(c, timeout=600)
        if rc != 0:
            print("%s: client failed:\n%s" % (tag, c.output()[-2000:]))
            return None
        tm = re.search(r"\{[^\n]*\"gen_tps\"[^\n]*\}", c.output())
        timing = json.loads(tm.group(0)) if tm else {}
        return {"fetch_s": t_fetch, "fetch_mbs": nbytes / t_fetch / 1e6, "ids": P.client_ids(c), "timing": timing}


def main():
    src = os.path.abspath(sys.argv[1])
    m = S.Model(harness.tmpdir("sw-priv-scale-"), 2, source=src)
    key = os.path.join(m.root, "swarm.key")
    harness.run([harness.BIN, "keygen", "--swarm", "-o", key], check_rc=0)
    res = {"plain": one(m, None), "private": one(m, key)}
    print("model %s, 2 shards (%.0f + %.0f MB), %d tokens" % (os.path.basename(src), os.path.getsize(m.shard_path(0)) / 1e6,
                                                            os.path.getsize(m.shard_path(1)) / 1e6, N))
    for k, r in res.items():
        if not r:
            print("  %-8s failed" % k)
            continue
        t = r["timing"]
        print("  %-8s 2 shards fetched in %.1f s (%.0f MB/s); first token %.0f ms; decode %.2f tok/s" %
              (k, r["fetch_s"], r["fetch_mbs"], t.get("ttft_ms", 0), t.get("gen_tps", 0)))
    if res["plain"] and res["private"]:
        print("  tokens equal: %s" % (res["plain"]["ids"] == res["private"]["ids"] and len(res["plain"]["ids"]) == N))
    print("  load average: %s" % open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
