"""interop_webseed.py — BEP 19 web seeds against a local range-capable HTTP server
(helpers_http.py): piece ranges over multi-file torrents with and without BEP 47 pad files,
URL escaping, single-file URLs, and the faults (404, no Range support, short body, 503 with
Retry-After, corrupt bytes). Every result is checked by SHA-256. Uses bench_bt_netprobe
(bench/bt_netprobe.c), which drives src/bt/webseed.c directly; shardswarm's own fetch with
a web-seed-only torrent is checked too when `shardswarm fetch` is built.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers_bt as hb  # noqa: E402
from helpers_bt import harness  # noqa: E402
from harness import check, check_eq  # noqa: E402

HTTP = os.path.join(hb.HERE, "helpers_http.py")


def start_http(procs, root, mode, name):
    p = procs.start(name, [hb.PY, HTTP, "--root", root, "--mode", mode])
    m = p.wait_for(r"listening on (\d+)", timeout=20)
    return int(m.group(1))


def probe_ws(probe, torrent, url, out, extra=(), timeout=120):
    r = harness.run([probe, "webseed", "--timeout-s", "60"] + list(extra) + [torrent, url, out], timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test():
    probe = hb.netprobe()
    work = harness.tmpdir("sw-ws-")
    root = os.path.join(work, "www")
    name = "model dir"  # a space: URL escaping
    files = ["shard-0.gguf", "sub/ü b.bin", "tiny.bin", "shard-2.gguf"]
    sizes = [(1 << 20) + 4097, 700 * 1024 + 3, 5, 600 * 1024]
    for i, (f, s) in enumerate(zip(files, sizes)):
        hb.random_file(os.path.join(root, name, f), s, 100 + i)
    src_sha = {f: hb.sha256_file(os.path.join(root, name, f)) for f in files}
    piece = 1 << 18

    with harness.Procs() as procs:
        port = start_http(procs, root, "normal", "http")
        base = "http://127.0.0.1:%d/" % port

        # 1. Ranges and URLs: with pads every piece lies in one file; without, pieces span files.
        tp = os.path.join(work, "pad.torrent")
        open(tp, "wb").write(hb.make_torrent(root, name, files, piece, pad=True, url_list=[base]))
        tn = os.path.join(work, "nopad.torrent")
        open(tn, "wb").write(hb.make_torrent(root, name, files, piece, pad=False, url_list=[base]))
        r = harness.run([probe, "ranges", tn, "4", base.rstrip("/")], timeout=30, check_rc=0)
        # Without pads piece 4 starts at 1 MiB: the last 4097 bytes of shard-0, then sub/ü b.bin.
        lines = [l for l in r.stdout.splitlines() if l.startswith("range ")]
        check_eq(len(lines), 2, "ranges of piece 4 without pads:\n" + r.stdout)
        check("file=0 off=1048576 len=4097 poff=0 " in lines[0], "first range: " + lines[0])
        check("file=1 off=0 len=258047 poff=4097 " in lines[1], "second range: " + lines[1])
        check(lines[1].endswith("url=%smodel%%20dir/sub/%%C3%%BC%%20b.bin" % base),
              "escaped multi-file URL (BEP 19 url/name/path): " + lines[1])
        r = harness.run([probe, "ranges", tp, "4", base], timeout=30, check_rc=0)
        check("pad=1" in r.stdout, "piece 4 of the padded torrent ends in a pad file:\n" + r.stdout)

        # 2. Whole downloads, checked by SHA-256, with and without pads, various parallelism.
        for tor, tag, inflight in ((tp, "pad", "4"), (tn, "nopad", "1"), (tn, "nopad8", "8")):
            out = os.path.join(work, "out-" + tag)
            rc, log = probe_ws(probe, tor, base, out, ["--in-flight", inflight, "--max-errors", "1"])
            check_eq(rc, 0, "web seed download (%s) rc; log:\n%s" % (tag, log))
            for f in files:
                check_eq(hb.sha256_file(os.path.join(out, name, f)), src_sha[f], "%s %s sha256" % (tag, f))
            check(not os.path.exists(os.path.join(out, name, ".pad")), "pad files are never fetched or written")

        # 3. Single-file torrent: URL is the file itself, or a folder URL ending in '/'.
        single = os.path.join(root, "single.bin")
        hb.random_file(single, 3 * piece + 77, 9)
        ts = os.path.join(work, "single.torrent")
        open(ts, "wb").write(hb.make_single_torrent(single, piece))
        for url in (base + "single.bin", base):
            out = os.path.join(work, "out-single-%d" % len(url))
            rc, log = probe_ws(probe, ts, url, out, ["--max-errors", "1"])
            check_eq(rc, 0, "single-file web seed %s; log:\n%s" % (url, log))
            check_eq(hb.sha256_file(os.path.join(out, "single.bin")), hb.sha256_file(single), "single-file sha256")

        # 4. 404: a missing file is reported as not found and the web seed backs off.
        rc, log = probe_ws(probe, tp, base + "nowhere/", os.path.join(work, "out-404"), ["--max-errors", "1"])
        check(rc == 1 and "err=-6 " in log,
              "404 reported as not found:\n" + log)
        check("backoff_ms=" in log and "backoff_ms=0" not in log, "404 backs the web seed off:\n" + log)

        # 5. A server without Range support.
        p2 = start_http(procs, root, "norange", "http-norange")
        rc, log = probe_ws(probe, tn, "http://127.0.0.1:%d/" % p2, os.path.join(work, "out-nr"),
                           ["--max-errors", "1", "--in-flight", "1"])
        check(rc == 1 and "supported" in log.lower(), "no range support reported:\n" + log)

        # 6. A body shorter than its Content-Length.
        p3 = start_http(procs, root, "short", "http-short")
        rc, log = probe_ws(probe, tp, "http://127.0.0.1:%d/" % p3, os.path.join(work, "out-short"),
                           ["--max-errors", "1", "--in-flight", "1"])
        check(rc == 1 and "error piece=" in log, "short body reported:\n" + log)

        # 7. 503 with Retry-After every third request: completes after backing off.
        p4 = start_http(procs, root, "flaky", "http-flaky")
        out = os.path.join(work, "out-flaky")
        rc, log = probe_ws(probe, tp, "http://127.0.0.1:%d/" % p4, out, ["--max-errors", "50", "--in-flight", "2"])
        check_eq(rc, 0, "flaky server download; log:\n" + log)
        check("err=-14" in log, "503 seen as busy (SW_EBUSY):\n" + log)
        for f in files:
            check_eq(hb.sha256_file(os.path.join(out, name, f)), src_sha[f], "flaky %s sha256" % f)

        # 8. Corrupt bytes: the hash check fails, nothing is written, the web seed is banned.
        p5 = start_http(procs, root, "corrupt", "http-corrupt")
        rc, log = probe_ws(probe, tp, "http://127.0.0.1:%d/" % p5, os.path.join(work, "out-bad"),
                           ["--max-errors", "1", "--in-flight", "1"])
        check(rc == 1 and "hash mismatch" in log, "corrupt piece detected:\n" + log)

        # 8b. A Content-Range that does not match the request: malformed, nothing delivered.
        p6 = start_http(procs, root, "badrange", "http-badrange")
        rc, log = probe_ws(probe, tp, "http://127.0.0.1:%d/" % p6, os.path.join(work, "out-br"),
                           ["--max-errors", "1", "--in-flight", "1"])
        check(rc == 1 and "err=-4 " in log, "Content-Range mismatch reported as malformed:\n" + log)

        # 9. The core's session with our glue (sw__bt_netglue) on a web-seed-only torrent:
        #    the session's picker asks for whole pieces, verifies and stores them.
        tw = os.path.join(work, "wsonly.torrent")
        open(tw, "wb").write(hb.make_torrent(root, name, files, piece, pad=True, url_list=[base]))
        out = os.path.join(work, "out-session")
        r = harness.run([probe, "session", "--timeout-s", "90", tw, out], timeout=120)
        check_eq(r.returncode, 0, "session + web seed glue: rc; output:\n%s%s" % (r.stdout, r.stderr[-3000:]))
        check("complete" in r.stdout, "session reported completion: " + r.stdout)
        for f in files:
            check_eq(hb.sha256_file(os.path.join(out, f)), src_sha[f], "session web seed %s sha256" % f)



def test_cli():
    """`shardswarm fetch` of a web-seed-only torrent: the CLI over the same path."""
    sw = hb.shardswarm()
    hb.sw_ready_or_fail("fetch")
    work = harness.tmpdir("sw-ws-cli-")
    root = os.path.join(work, "www")
    name = "model dir"
    files = ["shard-0.gguf", "sub/ü b.bin", "shard-2.gguf"]
    for i, (f, sz) in enumerate(zip(files, [(1 << 20) + 4097, 700 * 1024 + 3, 600 * 1024])):
        hb.random_file(os.path.join(root, name, f), sz, 200 + i)
    src_sha = {f: hb.sha256_file(os.path.join(root, name, f)) for f in files}
    with harness.Procs() as procs:
        port = start_http(procs, root, "normal", "http")
        base = "http://127.0.0.1:%d/" % port
        tw = os.path.join(work, "wsonly.torrent")
        open(tw, "wb").write(hb.make_torrent(root, name, files, 1 << 18, pad=True, url_list=[base]))
        out = os.path.join(work, "out-sw")
        r = harness.run([sw, "fetch", tw, "--all", "--out", out, "--timeout", "60"], timeout=90)
        check_eq(r.returncode, 0, "shardswarm fetch of a web-seed-only torrent: exit status (the CLI must attach "
                 "bt-net's web seed fetcher: sw__bt_netglue_new in src/bt/bt_net.h); stderr:\n%s"
                 % r.stderr[-3000:])
        for f in files:
            cands = [os.path.join(out, f), os.path.join(out, name, f)]
            got = [c for c in cands if os.path.isfile(c)]
            check(got, "shardswarm fetch wrote %s (looked at %s)" % (f, cands))
            check_eq(hb.sha256_file(got[0]), src_sha[f], "shardswarm web seed %s sha256" % f)


if __name__ == "__main__":
    harness.main(test_cli if sys.argv[1:] == ["cli"] else test)
