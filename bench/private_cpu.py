"""private_cpu.py — where a loopback fetch's CPU goes, old and new binaries alternated
(docs/protocol.md, Measurements). On a shared 2-core machine the wall-clock rate moves with
the load; the CPU seconds each process spent per GiB move much less, and with both ends on
one machine they bound the rate: cores / (seed + fetch CPU-s per GiB).

    SW_BINS="old/shardswarm new/shardswarm" PRIV_CPU_MB=512 PRIV_CPU_REPS=3 \
        PRIV_CPU_MODE=private python3 bench/private_cpu.py

For each rep, each binary in turn: `seed` then `fetch --all` of one PRIV_CPU_MB MiB shard
(1 MiB pieces) on loopback, with --swarm-key when PRIV_CPU_MODE is private; the output goes
to /dev/shm when it has room and is compared with the source. Medians per binary: MB/s,
user and system CPU seconds of the seeder and the fetcher (from wait4), CPU-s per GiB of
both together, and the fetcher's minor page faults.
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bt_bench as B  # noqa: E402
from bt_bench import harness, hb  # noqa: E402

SIZE_MB = int(os.environ.get("PRIV_CPU_MB", "512"))
REPS = int(os.environ.get("PRIV_CPU_REPS", "3"))
MODE = os.environ.get("PRIV_CPU_MODE", "private")
BINS = os.environ.get("SW_BINS", harness.BIN).split()


def reap(p, timeout):
    """wait4 with a deadline: (status, rusage), or None after killing p."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return p.returncode, ru
        time.sleep(0.01)
    p.kill()
    os.wait4(p.pid, 0)
    return None


def one(binary, work, torrent, split, key, out):
    sp = harness.free_port()
    extra = ["--swarm-key", key] if MODE == "private" else []
    log = open(os.path.join(work, "seed.log"), "wb")
    s = subprocess.Popen([binary, "seed", torrent, "--dir", split, "--listen", str(sp)] + extra,
                         stdout=log, stderr=subprocess.STDOUT)
    f = None
    try:
        hb.wait_port(sp, timeout=120)
        t0 = time.time()
        f = subprocess.Popen([binary, "fetch", torrent, "--all", "--out", out, "--peer", "127.0.0.1:%d" % sp] + extra,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fr = reap(f, 600)
        secs = time.time() - t0
        s.send_signal(signal.SIGINT)
        sr = reap(s, 30)
    finally:
        for p in (s, f):
            if p is not None and p.returncode is None:
                p.kill()
                p.wait()
        log.close()
    if not fr or fr[0] != 0 or not sr:
        return None
    return secs, sr[1], fr[1]


def main():
    work = harness.tmpdir("sw-priv-cpu-")
    out_root = work
    if os.path.isdir("/dev/shm"):
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > 3 * (SIZE_MB << 20):
            out_root = tempfile.mkdtemp(prefix="sw-priv-cpu-", dir="/dev/shm")
    res = {b: [] for b in BINS}
    try:
        split, tree, name, torrent, want = B.make_data(work, SIZE_MB, "bench-priv")
        key = os.path.join(work, "swarm.key")
        harness.run([BINS[0], "keygen", "--swarm", "-o", key], check_rc=0)
        load0 = open("/proc/loadavg").read().split()[:3]
        for rep in range(REPS):
            for b in BINS:
                out = os.path.join(out_root, "out-%d" % rep)
                r = one(b, work, torrent, split, key, out)
                ok = r is not None and B.verify(out, name, want, b)
                shutil.rmtree(out, True)
                if not ok:
                    print("  %s: failed" % b)
                    continue
                secs, s, f = r
                res[b].append((SIZE_MB * 1048576 / secs / 1e6, s.ru_utime, s.ru_stime, f.ru_utime, f.ru_stime,
                               f.ru_minflt))
        load1 = open("/proc/loadavg").read().split()[:3]
        gib = SIZE_MB / 1024
        print("%s, %d MiB, %d reps alternated, load average %s -> %s (medians)" % (MODE, SIZE_MB, REPS, load0, load1))
        print("  %-44s %6s %7s %7s %7s %7s %8s %7s" % ("binary", "MB/s", "seed.u", "seed.s", "fetch.u", "fetch.s",
                                                      "CPU-s/GiB", "minflt"))
        for b in BINS:
            v = res[b]
            if not v:
                continue
            m = [statistics.median(c) for c in zip(*v)]
            per_gib = statistics.median([sum(x[1:5]) for x in v]) / gib
            print("  %-44s %6.0f %7.2f %7.2f %7.2f %7.2f %8.2f %7.0f" % (b[-44:], m[0], m[1], m[2], m[3], m[4], per_gib, m[5]))
            print("  %-44s runs (MB/s): %s" % ("", ", ".join("%.0f" % x[0] for x in v)))
    finally:
        shutil.rmtree(work, True)
        if out_root != work:
            shutil.rmtree(out_root, True)


if __name__ == "__main__":
    main()
