"""interop_clients.py — proves the interop harness itself with no shardswarm code in the
data path: a padded (BEP 47) multi-file shard torrent, seeded by aria2c and fetched by
libtorrent (which dials it), then seeded by libtorrent and fetched by aria2c (which finds it
through a tracker, since aria2c cannot be told a peer). Done with a reference torrent and
with the torrent `shardswarm torrent create` makes (other clients must take it as an
ordinary v1 torrent). If these fail, the interop tests against shardswarm cannot be
trusted. Every result checked by SHA-256.
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


def exchange(work, tag, torrent, split, names, want, tracker):
    name, files, _, _ = hb.torrent_layout(torrent)
    harness.check_eq(sorted(files), sorted(names), "%s torrent files" % tag)
    seedroot = os.path.join(work, "seed-" + tag)
    hb.client_tree(split, seedroot, name, names)
    pad_files(seedroot, name, torrent)
    with harness.Procs() as procs:
        # aria2c seeds on 127.0.0.2, libtorrent dials it from 127.0.0.3.
        pa = harness.free_port()
        a = procs.start("aria2-seed-" + tag, hb.aria2_args(torrent, seedroot, pa, tracker=tracker.url, seed=True,
                                                           ip="127.0.0.2"))
        a.wait_for(r"SEED|seeding|Seeding|Download complete", timeout=60)
        out1 = os.path.join(work, "lt-out-" + tag)
        lt = procs.start("lt-fetch-" + tag, hb.lt_args("fetch", torrent, out1, harness.free_port(),
                                                       peers=["127.0.0.1:%d" % pa], bind="127.0.0.3",
                                                       extra=["--timeout", str(TIMEOUT)]))
        lt.wait_for(r"complete [\d.]+", timeout=TIMEOUT + 10)
        hb.check_outputs(out1, name, names, want, "%s: aria2c -> libtorrent" % tag)
        lt.stop()
        a.stop()

        # libtorrent seeds on 127.0.0.4; aria2c finds it through the tracker (static peer).
        pls = harness.free_port()
        tracker.static[:] = [("127.0.0.4", pls)]
        ls = procs.start("lt-seed-" + tag, hb.lt_args("seed", torrent, seedroot, pls, bind="127.0.0.4"))
        ls.wait_for(r"seeding", timeout=60)
        out2 = os.path.join(work, "aria-out-" + tag)
        a2 = procs.start("aria2-fetch-" + tag, hb.aria2_args(torrent, out2, harness.free_port(), tracker=tracker.url,
                                                             ip="127.0.0.5"))
        rc = a2.p.wait(timeout=TIMEOUT)
        harness.check_eq(rc, 0, "%s: aria2c fetch exit status; log:\n%s" % (tag, a2.output()[-3000:]))
        hb.check_outputs(out2, name, names, want, "%s: libtorrent -> aria2c" % tag)


def test():
    hb.need_tool("aria2c", "aria2")
    hb.need_libtorrent()
    work = harness.tmpdir("sw-clients-")
    split = os.path.join(work, "split")
    names = hb.synthetic_split(split)
    want = {n: hb.sha256_file(os.path.join(split, n)) for n in names}
    ref = os.path.join(work, "ref.torrent")
    reftree = os.path.join(work, "reftree")
    hb.client_tree(split, reftree, "synthetic", names)
    open(ref, "wb").write(hb.make_torrent(reftree, "synthetic", names, 1 << 18, pad=True))
    tracker = hb.MiniTracker()
    try:
        exchange(work, "ref", ref, split, names, want, tracker)
        # The same with the torrent shardswarm makes (BEP 47 pads, shardswarm dictionary):
        # other clients must accept it as an ordinary v1 torrent.
        if os.access(harness.BIN, os.X_OK):
            swt = hb.sw_torrent_create(split, os.path.join(work, "sw.torrent"))
            exchange(work, "sw", swt, split, names, want, tracker)
        else:
            print("NOTE: shardswarm not built: its torrent not exchanged", file=sys.stderr)
    finally:
        tracker.close()


if __name__ == "__main__":
    harness.main(test)
