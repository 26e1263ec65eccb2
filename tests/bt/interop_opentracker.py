"""interop_opentracker.py — the HTTP tracker client against Debian's opentracker
(whitelist-only build: `-w FILE` of info-hashes), then tracker-only swarms: no peer is
given to anyone, every client learns the others from opentracker.

1. bench_bt_netprobe announces (src/bt/tracker.c): two announcers see each other, a hash
   that is not whitelisted gets opentracker's failure reason.
2. aria2c seeds, libtorrent fetches (harness proof).
3. the core's session + our announcer (src/bt/tracker_session.c) seeds and fetches
   (bench_bt_netprobe session).
With the argument "cli": only 4. the shardswarm CLI (seed / fetch) through the tracker.
Every result checked by SHA-256.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers_bt as hb  # noqa: E402
from helpers_bt import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

TIMEOUT = 120


def test(cli=False):
    work = harness.tmpdir("sw-ot-")
    split = os.path.join(work, "split")
    names = hb.synthetic_split(split, sizes=(2 << 20, (1 << 20) + 999))
    name = "synthetic"
    seedroot = os.path.join(work, "seed")
    hb.client_tree(split, seedroot, name, names)
    want = {n: hb.sha256_file(os.path.join(split, n)) for n in names}
    with harness.Procs() as procs:
        # The torrent needs the tracker URL, the whitelist needs the info-hash: pick the port
        # first, make the torrents, then start opentracker with its whitelist.
        probe = hb.netprobe()
        ih_probe = "ab" * 20
        placeholder = os.path.join(work, "t.torrent")
        port_guess = harness.free_port()
        url = "http://127.0.0.1:%d/announce" % port_guess
        tor_bytes = hb.make_torrent(seedroot, name, names, 1 << 18, pad=True, announce=url)
        open(placeholder, "wb").write(tor_bytes)
        ih = hb.info_hash_of(tor_bytes)
        ot = hb.need_tool("opentracker", "opentracker")
        otroot = os.path.join(work, "ot")
        os.makedirs(otroot)
        sw_torrent = os.path.join(work, "sw.torrent")
        sw_ih = None
        if os.access(harness.BIN, os.X_OK):
            r = harness.run([harness.BIN, "torrent", "create", split, "-o", sw_torrent, "--tracker", url],
                            timeout=120)
            if r.returncode == 0 and os.path.isfile(sw_torrent):
                sw_ih = hb.info_hash_of(open(sw_torrent, "rb").read())
            else:
                print("NOTE: shardswarm torrent create unavailable (rc %d): %s" % (r.returncode, r.stderr[-300:]),
                      file=sys.stderr)
        with open(os.path.join(otroot, "whitelist"), "w") as f:
            for h in [ih_probe, ih] + ([sw_ih] if sw_ih else []):
                f.write(h + "\n")
        wl = "whitelist" if os.getuid() == 0 else os.path.join(otroot, "whitelist")
        args = [ot, "-i", "127.0.0.1", "-p", str(port_guess), "-P", str(port_guess), "-w", wl]
        if os.getuid() == 0:
            args[5:5] = ["-d", otroot]  # chroot; the whitelist path is then relative to it
        otp = procs.start("opentracker", args, cwd=otroot)
        hb.wait_port(port_guess, timeout=20, proc=otp)

        swname = None
        if sw_ih:
            swname, swfiles, _, _ = hb.torrent_layout(sw_torrent)
        if cli:
            # 4. The shardswarm CLI: `seed` and `fetch` meet through the tracker alone.
            if not sw_ih:
                hb.fail("shardswarm torrent create --tracker did not produce a torrent")
            hb.sw_ready_or_fail("seed")
            sp = harness.free_port()
            s = procs.start("sw-seed", hb.sw_seed_args(sw_torrent, split, sp))
            hb.wait_port(sp, timeout=60, proc=s)
            out = os.path.join(work, "sw-out")
            f = procs.start("sw-fetch", hb.sw_fetch_args(sw_torrent, out))
            rc = f.p.wait(timeout=TIMEOUT)
            check_eq(rc, 0, "shardswarm fetch via opentracker (the CLI must announce: sw__bt_netglue_add_torrent "
                     "in src/bt/bt_net.h) exit status; log:\n" + f.output()[-3000:])
            hb.check_outputs(out, swname, [x for x in swfiles if x in names], want,
                             "shardswarm -> shardswarm via opentracker")
            return

        # 1. Our tracker client.
        r1 = harness.run([probe, "announce", "--event", "started", "--left", "100", ih_probe, "5001", url], timeout=30)
        check_eq(r1.returncode, 0, "first announce to opentracker: " + r1.stdout + r1.stderr)
        r2 = harness.run([probe, "announce", "--left", "0", ih_probe, "5002", url], timeout=30)
        check(r2.returncode == 0 and "peer 127.0.0.1:5001" in r2.stdout, "second announcer sees the first: " + r2.stdout)
        r3 = harness.run([probe, "announce", "cd" * 20, "5003", url], timeout=30)
        check(r3.returncode == 1 and "failure" in r3.stdout and "not authorized" in r3.stdout,
              "non-whitelisted hash refused with a failure reason: " + r3.stdout)

        # 2. aria2c seeds, libtorrent leeches: only the tracker connects them.
        if shutil.which("aria2c"):
            hb.need_libtorrent()
            pa = harness.free_port()
            a = procs.start("aria2-seed", [x for x in hb.aria2_args(placeholder, seedroot, pa, seed=True)
                                           if not x.startswith("--bt-exclude-tracker")])
            a.wait_for(r"SEED|Seeding|seeding", timeout=60)
            out = os.path.join(work, "lt-out")
            lt = procs.start("lt-fetch", hb.lt_args("fetch", placeholder, out, harness.free_port(), bind="127.0.0.3",
                                                    extra=["--timeout", str(TIMEOUT)]))
            lt.wait_for(r"complete [\d.]+", timeout=TIMEOUT + 10)
            hb.check_outputs(out, name, names, want, "aria2c -> libtorrent via opentracker")
            lt.stop()
            a.stop()

        # 3. The core's session with our announcer (bench_bt_netprobe session = sw_bt_session +
        #    sw__bt_netglue), then the shardswarm CLI: seeder and leecher meet through the tracker.
        if not sw_ih:
            hb.fail("shardswarm torrent create --tracker did not produce a torrent: the tracker-only "
                    "shardswarm swarm cannot run")
        s = procs.start("session-seed", [probe, "session", "--seed", sw_torrent, split])
        s.wait_for(r"seeding", timeout=60)
        out = os.path.join(work, "session-out")
        f = procs.start("session-fetch", [probe, "session", "--bind", "127.0.0.2", "--timeout-s", str(TIMEOUT),
                                          sw_torrent, out])
        rc = f.p.wait(timeout=TIMEOUT + 10)
        check_eq(rc, 0, "session fetch via opentracker exit status; log:\n" + f.output()[-3000:])
        hb.check_outputs(out, swname, [x for x in swfiles if x in names], want, "session -> session via opentracker")
        s.stop()


if __name__ == "__main__":
    harness.main(lambda: test(cli=sys.argv[1:] == ["cli"]))
