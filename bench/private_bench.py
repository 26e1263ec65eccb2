"""private_bench.py — what a private swarm costs (run by bench/45_private.sh; docs/protocol.md).

(a) bench_noise: the handshake, seal/open GB/s of 16 KiB piece blocks on one core, and the
    seal + open time one pipeline hop adds per message size (CPU time of the thread).
(b) one seeder -> one leecher of a PRIV_BENCH_MB MiB shard (default 1024, 1 MiB pieces) on
    loopback, `shardswarm seed`/`fetch` plain and with --swarm-key, alternated
    PRIV_BENCH_REPS times (default 3); MB/s = bytes / seconds from starting the leecher to
    its exit (every piece SHA-1 verified). Downloads go to /dev/shm when it has room.
Goal (issue 13): encrypted piece throughput >= 1 GB/s; pipeline hop <= 10 us added.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bt_bench as B  # noqa: E402
from bt_bench import harness, hb  # noqa: E402

SIZE_MB = int(os.environ.get("PRIV_BENCH_MB", "1024"))
REPS = int(os.environ.get("PRIV_BENCH_REPS", "3"))


def main():
    build = os.environ.get("SW_BUILD_DIR") or os.path.dirname(harness.BIN)
    nb = os.path.join(build, "bench", "bench_noise")
    print("(a) bench_noise (%s)" % nb)
    if os.path.exists(nb):
        sys.stdout.flush()
        subprocess.run([nb, "1024"], check=False)
    else:
        print("  not built")
    work = harness.tmpdir("sw-priv-bench-")
    out_root = work
    if os.path.isdir("/dev/shm"):
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > 3 * (SIZE_MB << 20):
            out_root = tempfile.mkdtemp(prefix="sw-priv-bench-", dir="/dev/shm")
    try:
        split, tree, name, torrent, want = B.make_data(work, SIZE_MB, "bench-priv")
        key = os.path.join(work, "swarm.key")
        harness.run([harness.BIN, "keygen", "--swarm", "-o", key], check_rc=0)
        res = {"plain": [], "private": []}
        with harness.Procs() as procs:
            for rep in range(REPS):
                for mode in ("plain", "private"):
                    os.sync()
                    extra = ["--swarm-key", key] if mode == "private" else []
                    out = os.path.join(out_root, "out-%s-%d" % (mode, rep))
                    sp = harness.free_port()
                    s = procs.start("seed-%s-%d" % (mode, rep),
                                    [harness.BIN, "seed", torrent, "--dir", split, "--listen", str(sp)] + extra)
                    hb.wait_port(sp, timeout=120, proc=s)
                    f = procs.start("fetch-%s-%d" % (mode, rep), [harness.BIN, "fetch", torrent, "--all", "--out", out,
                                                                  "--peer", "127.0.0.1:%d" % sp] + extra)
                    secs = B.wait_done(f, timeout=600)
                    s.stop()
                    ok = secs is not None and B.verify(out, name, want, mode)
                    shutil.rmtree(out, True)
                    if ok:
                        res[mode].append((SIZE_MB << 20) / secs / 1e6)
        print("(b) one seeder -> one leecher, %d MiB, 1 MiB pieces, loopback, %d runs each (MB/s)" % (SIZE_MB, REPS))
        for mode in ("plain", "private"):
            v = res[mode]
            if v:
                print("  %-8s median %7.0f  (runs: %s)" % (mode, statistics.median(v), ", ".join("%.0f" % x for x in v)))
            else:
                print("  %-8s failed" % mode)
        if res["plain"] and res["private"]:
            print("  private / plain: %.2f" % (statistics.median(res["private"]) / statistics.median(res["plain"])))
        print("  load average while measuring: %s" % open("/proc/loadavg").read().split()[:3])
    finally:
        shutil.rmtree(work, True)
        if out_root != work:
            shutil.rmtree(out_root, True)


if __name__ == "__main__":
    main()
