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
                       "size": sz, "sha256": sha256_file(os.path.join(folder, n))})
        layer += 2
    # The manifest format of src/gguf/manifest.c ("shardswarm-model", version 1).
    manifest = {"format": "shardswarm-model", "version": 1, "model_id": "synthetic-test",
                "name": "synthetic", "architecture": "llama", "n_layers": layer, "alignment": 32,
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


# ------------------------------------------------------------------ a tiny learning tracker

class MiniTracker:
    """An in-process HTTP tracker (BEP 3 + BEP 23 compact) on 127.0.0.1 that remembers who
    announced and hands each announcer the others (plus any static peers). For clients that
    cannot be told a peer directly (aria2c). Not opentracker: see interop_opentracker.py."""

    def __init__(self, static_peers=()):
        import socket
        import struct
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        tracker = self
        self.swarms = {}
        self.static = list(static_peers)
        self.lock = threading.Lock()
        self.log = []

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query, encoding="latin-1")
                ih = q.get("info_hash", [""])[0].encode("latin-1")
                try:
                    port = int(q.get("port", ["0"])[0])
                except ValueError:
                    port = 0
                ip = q.get("ip", [self.client_address[0]])[0]
                ev = q.get("event", [""])[0]
                with tracker.lock:
                    tracker.log.append((ih.hex(), ip, port, ev))
                    sw = tracker.swarms.setdefault(ih, set())
                    if ev == "stopped":
                        sw.discard((ip, port))
                    elif port:
                        sw.add((ip, port))
                    peers = [p for p in list(sw) + tracker.static if p != (ip, port)]
                blob = b"".join(socket.inet_aton(h) + struct.pack(">H", p) for h, p in peers)
                body = bencode({"interval": 5, "min interval": 1, "peers": blob})
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class S(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.srv = S(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d/announce" % self.port
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


# ------------------------------------------------------------------ other clients

def aria2_args(torrent, out_dir, port, tracker=None, seed=False, ip="127.0.0.1", upload_limit=0):
    a = [need_tool("aria2c", "aria2"), "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
         "--enable-peer-exchange=false", "--disable-ipv6=true", "--listen-port=%d" % port,
         "--dir=%s" % out_dir, "--console-log-level=notice", "--summary-interval=1",
         "--file-allocation=none", "--bt-max-peers=0", "--bt-request-peer-speed-limit=0",
         "--max-overall-upload-limit=%d" % upload_limit, "--bt-external-ip=%s" % ip,
         "--auto-save-interval=0", "--bt-save-metadata=false", "--rpc-save-upload-metadata=false",
         "--bt-tracker-interval=2", "--bt-exclude-tracker=*", "--follow-torrent=false"]
    if tracker:
        a.append("--bt-tracker=%s" % tracker)
    if seed:
        a += ["--seed-ratio=0.0", "--check-integrity=true", "--bt-seed-unverified=false"]
    else:
        a += ["--seed-time=0", "--bt-stop-timeout=120"]
    return a + [torrent]


def lt_args(mode, torrent, out_dir, port, peers=(), bind="127.0.0.1", extra=()):
    need_libtorrent()
    a = [PY, os.path.join(HERE, "helpers_lt.py"), mode, torrent, out_dir, "--port", str(port), "--bind", bind]
    for p in peers:
        a += ["--peer", p]
    return a + list(extra)


class _ProbeArgs(list):
    """An argument list whose positional tail stays last when flags are appended."""

    def __init__(self, head, tail):
        super().__init__(head + tail)
        self.tail = tail

    def __add__(self, more):
        return list(self[:len(self) - len(self.tail)]) + list(more) + list(self.tail)


# VIA = "cli": the shardswarm binary (seed / fetch); "session": bench_bt_netprobe session,
# i.e. the BitTorrent core's session (bt.h) plus bt-net's glue without the CLI on top.
VIA = "cli"


def sw_seed_args(torrent, shard_dir, port):
    """Flags go before TORRENT for the probe; callers may append "--peer H:P" (both accept it
    anywhere for the CLI; the probe's parser takes flags first, so we put them first)."""
    if VIA == "session":
        return _ProbeArgs([netprobe(), "session", "--seed", "--bind", "0.0.0.0", "--listen", str(port)],
                          [torrent, shard_dir])
    return [shardswarm(), "seed", torrent, "--dir", shard_dir, "--listen", str(port)]


def sw_fetch_args(torrent, out_dir, peers=(), extra=()):
    if VIA == "session":
        a = [netprobe(), "session", "--bind", "0.0.0.0", "--timeout-s", "85", torrent, out_dir]
        for p in peers:
            a[2:2] = ["--peer", p]
        return a
    a = [shardswarm(), "fetch", torrent, "--all", "--out", out_dir, "--timeout", "85"]
    for p in peers:
        a += ["--peer", p]
    return a + list(extra)


def sw_ready_or_fail(what):
    """Fails with a clear message when `shardswarm <what>` is still the placeholder."""
    if VIA == "session":
        netprobe()
        return
    r = harness.run([shardswarm(), what, "--help"], timeout=20)
    text = (r.stdout + r.stderr).lower()
    if "not implemented" in text:
        fail("shardswarm %s is not implemented yet (the BitTorrent core's command); output: %s"
             % (what, (r.stdout + r.stderr).strip()[:300]))


def sw_torrent_create(split_dir, out_path, extra=()):
    """`shardswarm torrent create DIR -o OUT [extra]`."""
    r = harness.run([shardswarm(), "torrent", "create", split_dir, "-o", out_path] + list(extra), timeout=120)
    if r.returncode != 0:
        fail("shardswarm torrent create %s failed (rc %d):\n%s%s" % (split_dir, r.returncode, r.stdout[-2000:],
                                                                     r.stderr[-2000:]))
    if not os.path.isfile(out_path):
        fail("shardswarm torrent create wrote no %s:\n%s" % (out_path, r.stderr[-2000:]))
    return out_path


def torrent_layout(torrent_path):
    """(name, [relative file paths without pads], piece_length) of a v1 torrent."""
    t = bdecode(open(torrent_path, "rb").read())
    info = t[b"info"]
    name = info[b"name"].decode()
    if b"files" in info:
        files = ["/".join(c.decode() for c in f[b"path"]) for f in info[b"files"]
                 if b"p" not in f.get(b"attr", b"")]
    else:
        files = [name]
    return name, files, info[b"piece length"], b"files" in info


def client_tree(src_dir, root, name, files, multi=True):
    """Lays the files of src_dir out as root/name/<file> (symlinks) for aria2c/libtorrent."""
    base = os.path.join(root, name) if multi else root
    for f in files:
        dst = os.path.join(base, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst):
            os.symlink(os.path.abspath(os.path.join(src_dir, os.path.basename(f) if not multi else f)), dst)
    return root


def find_output(out_dir, name, rel):
    """Where a client put file rel: out/name/rel (aria2c, libtorrent) or out/rel (shardswarm)."""
    for c in (os.path.join(out_dir, name, rel), os.path.join(out_dir, rel)):
        if os.path.isfile(c):
            return c
    return None


def check_outputs(out_dir, name, files, want_sha, what):
    for f in files:
        p = find_output(out_dir, name, f)
        check(p is not None, "%s: %s not found under %s" % (what, f, out_dir))
        got = sha256_file(p)
        if got != want_sha[f]:
            fail("%s: %s sha256 %s != %s" % (what, f, got, want_sha[f]))
