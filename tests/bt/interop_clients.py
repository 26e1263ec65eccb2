"""interop_clients.py — proves the interop harness itself with no shardswarm code in the
data path: a padded (BEP 47) multi-file shard torrent, seeded by aria2c and fetched by
libtorrent (which dials it), then seeded by libtorrent and fetched by aria2c (which finds it
through a tracker, since aria2c cannot be told a peer). If these fail, the interop tests
against shardswarm cannot be trusted. Every result checked by SHA-256.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers_bt as hb  # noqa: E402
from helpers_bt import harness  # noqa: E402

TIMEOUT = 120


def pad_files(root, name, torrent):
    """aria2c 1.36 treats BEP 47 pad files as ordinary files: give its seed tree zeros."""
    t = hb.bdecode(open(torrent, "rb").read())
    for f in t[b"info"].get(b"files", []):
        if b"p" in f.get(b"attr", b""):
            p = os.path.join(root, name, *[c.decode() for c in f[b"path"]])
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as fh:
                fh.write(bytes(f[b"length"]))


def test():
    hb.need_tool("aria2c", "aria2")
    hb.need_libtorrent()
    work = harness.tmpdir("sw-clients-")
    split = os.path.join(work, "split")
    names = hb.synthetic_split(split)
    name = "synthetic"
    seedroot = os.path.join(work, "seed")
    hb.client_tree(split, seedroot, name, names)
    torrent = os.path.join(work, "t.torrent")
    open(torrent, "wb").write(hb.make_torrent(seedroot, name, names, 1 << 18, pad=True))
    pad_files(seedroot, name, torrent)
    want = {n: hb.sha256_file(os.path.join(split, n)) for n in names}
    tracker = hb.MiniTracker()
    try:
        with harness.Procs() as procs:
            # aria2c seeds on 127.0.0.2, libtorrent dials it from 127.0.0.3.
            pa = harness.free_port()
            a = procs.start("aria2-seed", hb.aria2_args(torrent, seedroot, pa, tracker=tracker.url, seed=True,
                                                        ip="127.0.0.2"))
            a.wait_for(r"SEED|seeding|Seeding|Download complete", timeout=60)
            out1 = os.path.join(work, "lt-out")
            pl = harness.free_port()
            lt = procs.start("lt-fetch", hb.lt_args("fetch", torrent, out1, pl, peers=["127.0.0.1:%d" % pa],
                                                    bind="127.0.0.3", extra=["--timeout", str(TIMEOUT)]))
            lt.wait_for(r"complete [\d.]+", timeout=TIMEOUT + 10)
            hb.check_outputs(out1, name, names, want, "aria2c -> libtorrent")
            lt.stop()
            a.stop()

            # libtorrent seeds on 127.0.0.4 and announces to the tracker via us: aria2c finds
            # it through the tracker (static peer) and downloads.
            pls = harness.free_port()
            tracker.static.append(("127.0.0.4", pls))
            ls = procs.start("lt-seed", hb.lt_args("seed", torrent, seedroot, pls, bind="127.0.0.4"))
            ls.wait_for(r"seeding", timeout=60)
            out2 = os.path.join(work, "aria-out")
            pa2 = harness.free_port()
            a2 = procs.start("aria2-fetch", hb.aria2_args(torrent, out2, pa2, tracker=tracker.url, ip="127.0.0.5"))
            deadline_rc = a2.p.wait(timeout=TIMEOUT)
            harness.check_eq(deadline_rc, 0, "aria2c fetch exit status; log:\n" + a2.output()[-3000:])
            hb.check_outputs(out2, name, names, want, "libtorrent -> aria2c")
    finally:
        tracker.close()


if __name__ == "__main__":
    harness.main(test)
