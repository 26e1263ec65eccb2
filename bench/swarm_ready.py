#!/usr/bin/env python3
"""swarm_ready.py — readiness timings of real `shardswarm node` processes on 127.0.0.1.

  (a) copy-in: a node waits without its shard (--no-auto-fetch); the file is moved into its
      shards folder; time until EVERY node has printed [READY] (from the nodes' own JSON log
      timestamps, so polling does not add latency);
  (b) cold start: 8 nodes that already hold their shards are started at once; time from the
      first spawn until every node has printed [READY].
Model: `synth --preset llama-160m --layers 8 --type Q4_0` split into 8 shards (falls back to
stories260K in 4 shards x 2 replicas when synth is unavailable). Prints a table.
"""
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "swarm"))
import swarm_it as S  # noqa: E402
from swarm_it import harness  # noqa: E402

REPEAT = int(os.environ.get("SW_BENCH_REPEAT", "3"))


def ready_ts(proc, after):
    """Wall-clock time of the first [READY] log line at or after `after`, or None."""
    for line in proc.output().splitlines():
        if not line.startswith("{"):
            continue
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("subsys") == "READY" and o["ts"] >= after - 0.001:
            return o["ts"]
    return None


def wait_ready_all(nodes, after, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ts = [ready_ts(n.proc, after) for n in nodes]
        if all(t is not None for t in ts):
            return max(ts)
        time.sleep(0.05)
    raise RuntimeError("not every node ready within %ss" % timeout)


def make_model():
    root = harness.tmpdir("sw-bench-swarm-")
    vocab = os.path.join(harness.SHARED, "vocab", "ggml-vocab-llama-spm.gguf")
    try:
        m = S.Model(root, 8, synth=["--preset", "llama-160m", "--layers", "8", "--type", "Q4_0", "--vocab", vocab, "-t", "2"])
        return m, [(k, k) for k in range(8)], "llama-160m/8 layers Q4_0, 8 shards"
    except SystemExit:
        m = S.Model(root + "-s", 4, source=harness.shared_model())
        return m, [(i, i % 4) for i in range(8)], "stories260K, 4 shards x 2 replicas"


def main():
    S.node_supported()
    m, layout, label = make_model()
    extra = ["--log-format", "json"]
    cold, copy = [], []
    for rep in range(REPEAT):
        with harness.Procs() as procs:
            sw = S.Swarm(procs, m)
            # (b) cold start of 8 nodes holding their shards; the first is the others' bootstrap
            caches = [m.cache("r%d-n%d" % (rep, i), [k]) for i, k in layout]  # copies made before t0
            del caches
            t0 = time.time()
            for i, k in layout:
                first = sw.boot is None
                n = sw.start("r%d-n%d" % (rep, i), shard=k, cache_shards=[], extra=extra, wait=first)
                if first:
                    sw.boot = n.port
            t_ready = wait_ready_all(list(sw.nodes.values()), t0)
            cold.append(t_ready - t0)
        with harness.Procs() as procs:
            sw = S.Swarm(procs, m)
            n0 = None
            for i, k in layout[:-1]:
                n = sw.start("r%d-c%d" % (rep, i), shard=k, cache_shards=[k], extra=extra)
                if sw.boot is None:
                    sw.boot = n.port
            i, k = layout[-1]
            last = sw.start("r%d-c%d" % (rep, i), shard=k, extra=extra + ["--no-auto-fetch"])
            sw.wait_api()
            # wait until everyone sees everyone (8 nodes discovered), then drop the file in
            deadline = time.time() + 30
            while time.time() < deadline:
                st = [n.status() or {} for n in sw.nodes.values()]
                if all(len([x for x in s.get("nodes", []) if x.get("live")]) == len(layout) for s in st):
                    break
                time.sleep(0.05)
            dst = os.path.join(last.cache, "shards", "shard-%d.gguf" % k)
            shutil.copyfile(m.shard_path(k), dst + ".tmp")
            t0 = time.time()
            os.rename(dst + ".tmp", dst)
            t_ready = wait_ready_all(list(sw.nodes.values()), t0)
            copy.append(t_ready - t0)
            del n0
    print("model: %s; %d nodes on 127.0.0.1; %d runs (median, min, max)" % (label, len(layout), REPEAT))
    print("%-52s %8s %8s %8s %8s" % ("measure", "median", "min", "max", "goal"))
    print("%-52s %7.3fs %7.3fs %7.3fs %8s" % ("shard file appears -> every node [READY]", statistics.median(copy), min(copy), max(copy), "< 1 s"))
    print("%-52s %7.3fs %7.3fs %7.3fs %8s" % ("start 8 nodes holding shards -> every node [READY]", statistics.median(cold), min(cold), max(cold), "< 2 s"))


if __name__ == "__main__":
    main()
