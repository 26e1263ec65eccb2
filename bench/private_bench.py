"""private_bench.py — what a private swarm costs (run by bench/45_private.sh; docs/protocol.md).

(a) bench_noise: the handshake, seal/open GB/s of 16 KiB piece blocks on one core, and the
    seal + open time one pipeline hop adds per message size (CPU time of the thread).
(a2) bench_noise_link: the encrypted link alone — 16 KiB PIECE messages from one process to
    another over loopback TCP, plain and sealed, no disk and no SHA-1 (PRIV_BENCH_MB MiB,
    PRIV_BENCH_REPS runs each, alternated).
(b) one seeder -> one leecher of a PRIV_BENCH_MB MiB shard (default 1024, 1 MiB pieces) on
    loopback, `shardswarm seed`/`fetch` plain and with --swarm-key, alternated
    PRIV_BENCH_REPS times (default 3); MB/s = bytes / seconds from starting the leecher to
    its exit (every piece SHA-1 verified). Downloads go to /dev/shm when it has room.
With SW_BINS="old/shardswarm new/shardswarm" both binaries are measured, alternated inside
each rep (and each one's build/bench/bench_noise beside it is run), so a comparison on a shared
machine sees the same load.
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
BINS = os.environ.get("SW_BINS", "").split()


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main():
    bins = BINS or [harness.BIN]
    builds = [os.path.dirname(os.path.abspath(b)) for b in bins] if BINS else \
        [os.environ.get("SW_BUILD_DIR") or os.path.dirname(harness.BIN)]
    for build in builds:
        nb = os.path.join(build, "bench", "bench_noise")
        print("(a) bench_noise (%s), load average %s" % (nb, loadavg()))
        if os.path.exists(nb):
            sys.stdout.flush()
            subprocess.run([nb, "1024"], check=False)
        else:
            print("  not built")
        nl = os.path.join(build, "bench", "bench_noise_link")
        print("(a2) bench_noise_link (%s), load average %s" % (nl, loadavg()))
        sys.stdout.flush()
        if os.path.exists(nl):
            subprocess.run([nl, str(SIZE_MB), str(REPS)], check=False)
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
        res = {(b, m): [] for b in bins for m in ("plain", "private")}
        loads = [loadavg()]
        with harness.Procs() as procs:
            for rep in range(REPS):
                for bi, binary in enumerate(bins):
                    for mode in ("plain", "private"):
                        os.sync()
                        extra = ["--swarm-key", key] if mode == "private" else []
                        out = os.path.join(out_root, "out-%s-%d-%d" % (mode, bi, rep))
                        sp = harness.free_port()
                        s = procs.start("seed-%s-%d-%d" % (mode, bi, rep),
                                        [binary, "seed", torrent, "--dir", split, "--listen", str(sp)] + extra)
                        hb.wait_port(sp, timeout=120, proc=s)
                        f = procs.start("fetch-%s-%d-%d" % (mode, bi, rep),
                                        [binary, "fetch", torrent, "--all", "--out", out,
                                         "--peer", "127.0.0.1:%d" % sp] + extra)
                        secs = B.wait_done(f, timeout=600)
                        s.stop()
                        ok = secs is not None and B.verify(out, name, want, mode)
                        shutil.rmtree(out, True)
                        if ok:
                            res[(binary, mode)].append((SIZE_MB << 20) / secs / 1e6)
                loads.append(loadavg())
        print("(b) one seeder -> one leecher, %d MiB, 1 MiB pieces, loopback, %d runs each (MB/s)" % (SIZE_MB, REPS))
        for binary in bins:
            if BINS:
                print("  %s" % binary)
            for mode in ("plain", "private"):
                v = res[(binary, mode)]
                if v:
                    print("  %-8s median %7.0f  (runs: %s)" % (mode, statistics.median(v),
                                                              ", ".join("%.0f" % x for x in v)))
                else:
                    print("  %-8s failed" % mode)
            if res[(binary, "plain")] and res[(binary, "private")]:
                print("  private / plain: %.2f" % (statistics.median(res[(binary, "private")]) /
                                                   statistics.median(res[(binary, "plain")])))
        print("  load average (1, 5, 15 min) at the start and after each rep: %s" % "; ".join(loads))
    finally:
        shutil.rmtree(work, True)
        if out_root != work:
            shutil.rmtree(out_root, True)


if __name__ == "__main__":
    main()
