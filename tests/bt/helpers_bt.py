"""helpers_bt.py — shared pieces of the bt interop tests: bencode, a reference v1 torrent
maker (BEP 3, BEP 47 pad files, BEP 19 url-list) used to cross-check shardswarm's, finding
tools and build outputs, synthetic split folders, and starting other BitTorrent clients.

Every process goes through harness.Procs (stopped by PID). Nothing here talks beyond
127.0.0.x.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from harness import check, fail, skip  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"  # libtorrent's bindings are for the system Python


# ------------------------------------------------------------------ bencode

def bencode(v):
    if isinstance(v, bool):
        raise TypeError("bool")
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, (bytes, bytearray)):
        return b"%d:%s" % (len(v), bytes(v))
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted(((k.encode() if isinstance(k, str) else k), x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def bdecode(b):
    def dec(i):
        c = b[i:i + 1]
        if c == b"i":
            j = b.index(b"e", i)
            return int(b[i + 1:j]), j + 1
        if c == b"l":
            i += 1
            out = []
            while b[i:i + 1] != b"e":
                x, i = dec(i)
                out.append(x)
            return out, i + 1
        if c == b"d":
            i += 1
            out = {}
            while b[i:i + 1] != b"e":
                k, i = dec(i)
                x, i = dec(i)
                out[k] = x
            return out, i + 1
        j = b.index(b":", i)
        n = int(b[i:j])
        return b[j + 1:j + 1 + n], j + 1 + n
    v, end = dec(0)
    if end != len(b):
        raise ValueError("trailing bytes")
    return v


def info_hash_of(torrent_bytes):
    """SHA-1 of the raw info dict (found by re-encoding; our encoder is canonical)."""
    t = bdecode(torrent_bytes)
    return hashlib.sha1(bencode(t[b"info"])).hexdigest()


def make_torrent(root, name, rel_files, piece_length=1 << 18, pad=True, announce=None,
                 announce_list=None, url_list=None):
    """A v1 torrent of root/name/<rel_files> (multi-file) with BEP 47 pad files between files
    when pad is true. Returns the .torrent bytes."""
    files = []
    h = hashlib.sha1
    pieces = []
    buf = bytearray()

    def feed(data):
        buf.extend(data)
        while len(buf) >= piece_length:
            pieces.append(h(bytes(buf[:piece_length])).digest())
            del buf[:piece_length]

    total = 0
    for k, rel in enumerate(rel_files):
        p = os.path.join(root, name, rel)
        size = os.path.getsize(p)
        files.append({"length": size, "path": rel.split("/")})
        with open(p, "rb") as f:
            while True:
                d = f.read(1 << 20)
                if not d:
                    break
                feed(d)
        total += size
        if pad and k + 1 < len(rel_files) and total % piece_length:
            n = piece_length - total % piece_length
            files.append({"length": n, "path": [".pad", str(n)], "attr": "p"})
            feed(bytes(n))
            total += n
    if buf:
        pieces.append(h(bytes(buf)).digest())
    info = {"name": name, "piece length": piece_length, "pieces": b"".join(pieces), "files": files}
    t = {"info": info, "created by": "shardswarm tests"}
    if announce:
        t["announce"] = announce
    if announce_list:
        t["announce-list"] = announce_list
    if url_list:
        t["url-list"] = url_list
    return bencode(t)


def make_single_torrent(path, piece_length=1 << 18, announce=None, url_list=None):
    name = os.path.basename(path)
    pieces = []
    with open(path, "rb") as f:
        while True:
            d = f.read(piece_length)
            if not d:
                break
            pieces.append(hashlib.sha1(d).digest())
    info = {"name": name, "piece length": piece_length, "pieces": b"".join(pieces),
            "length": os.path.getsize(path)}
    t = {"info": info}
    if announce:
        t["announce"] = announce
    if url_list:
        t["url-list"] = url_list
    return bencode(t)


# ------------------------------------------------------------------ files and tools

def sha256_file(path):
    hh = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            hh.update(b)
    return hh.hexdigest()


def random_file(path, size, seed):
    import random
    r = random.Random(seed)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(r.randbytes(n))
            left -= n


def synthetic_split(folder, sizes=(3 << 20, (2 << 20) + 12345, 1 << 20), seed=7):
    """A split folder like `shardswarm split` makes: shard-N.gguf files (random bytes: the
    torrent layer does not parse them) and a model.json manifest. Returns the file names."""
    os.makedirs(folder, exist_ok=True)
    names = []
    shards = []
    layer = 0
    for i, sz in enumerate(sizes):
        n = "shard-%d.gguf" % i
        random_file(os.path.join(folder, n), sz, seed + i)
        names.append(n)
        shards.append({"index": i, "file": n, "layer_first": layer, "layer_last": layer + 1,
                       "bytes": sz, "sha256": sha256_file(os.path.join(folder, n))})
        layer += 2
    manifest = {"format": "shardswarm-split", "version": 1, "model_id": "synthetic-test",
                "name": "synthetic", "architecture": "llama", "n_layers": layer,
                "n_shards": len(sizes), "shards": shards}
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return names


def need_tool(name, package):
    p = shutil.which(name)
    if not p:
        skip("%s not installed (Debian package %s; scripts/install-deps installs it)" % (name, package))
    return p


def need_libtorrent():
    r = subprocess.run([PY, "-c", "import libtorrent; print(libtorrent.__version__)"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        skip("python3-libtorrent not installed for %s (scripts/install-deps installs it)" % PY)
    return r.stdout.strip()


def netprobe():
    """bench_bt_netprobe (bench/bt_netprobe.c) from the build folder."""
    cands = [os.environ.get("SW_NETPROBE", "")]
    bd = os.environ.get("SW_BUILD_DIR")
    if bd:
        cands.append(os.path.join(bd, "bench", "bench_bt_netprobe"))
    cands.append(os.path.join(harness.SOURCE, "build", "bench", "bench_bt_netprobe"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    skip("bench_bt_netprobe not built (cmake --build BUILD --target bench_bt_netprobe)")


def shardswarm():
    if not os.access(harness.BIN, os.X_OK):
        skip("shardswarm binary not built: %s" % harness.BIN)
    return harness.BIN


def wait_file_sha(path, want_sha, timeout, procs=None, what=""):
    """Waits until path exists with the wanted SHA-256 (checks size first, cheaply)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if os.path.isfile(path):
            s = sha256_file(path)
            if s == want_sha:
                return
            last = s
        for p in (procs or []):
            if not p.alive() and p.p.returncode not in (0, None):
                fail("%s: %s exited %s before %s was complete\n%s" % (what, p.name, p.p.returncode,
                                                                       path, p.output()[-3000:]))
        time.sleep(0.25)
    fail("%s: %s not complete within %ss (last sha256 %s)" % (what, path, timeout, last))


def wait_port(port, host="127.0.0.1", timeout=20, proc=None):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc is not None and not proc.alive():
                fail("%s exited before listening on %d\n%s" % (proc.name, port, proc.output()[-3000:]))
            time.sleep(0.1)
    fail("nothing listens on %s:%d after %ss" % (host, port, timeout))
