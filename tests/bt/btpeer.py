"""btpeer.py — a minimal BitTorrent seeder in Python for tests: serves a torrent's pieces from
a folder, optionally slowly (to interrupt a download mid-way) or with corrupt data (to check
that bad pieces are never written and the sender is banned). Loopback only; threads stop
when the test process ends (daemon threads) or on close()."""
import os
import socket
import struct
import threading
import time


def bdecode(data, i=0):
    c = data[i:i + 1]
    if c == b"i":
        e = data.index(b"e", i)
        return int(data[i + 1:e]), e + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1:colon + 1 + n], colon + 1 + n


def info_span(data):
    """Raw bytes of the info dict (for the info-hash)."""
    key = b"4:info"
    i = data.index(key) + len(key)
    _, end = bdecode(data, i)
    return data[i:end]


class Torrent:
    def __init__(self, path, folder):
        raw = open(path, "rb").read()
        meta, _ = bdecode(raw)
        import hashlib
        self.info_hash = hashlib.sha1(info_span(raw)).digest()
        info = meta[b"info"]
        self.piece_length = info[b"piece length"]
        self.hashes = info[b"pieces"]
        self.n_pieces = len(self.hashes) // 20
        self.files = []  # (offset, length, path or None for pad)
        off = 0
        for f in info.get(b"files", []):
            pad = b"p" in f.get(b"attr", b"")
            p = None if pad else os.path.join(folder, *[x.decode() for x in f[b"path"]])
            self.files.append((off, f[b"length"], p))
            off += f[b"length"]
        self.total = off

    def read(self, offset, length):
        out = bytearray()
        for off, ln, p in self.files:
            if offset + length <= off or offset >= off + ln:
                continue
            s = max(offset, off)
            e = min(offset + length, off + ln)
            if p is None:
                out += bytes(e - s)
            else:
                with open(p, "rb") as fh:
                    fh.seek(s - off)
                    out += fh.read(e - s)
        return bytes(out)


class Seeder:
    """mode: 'good' or 'corrupt'; rate: bytes/s per connection (0 = unlimited)."""

    def __init__(self, torrent, mode="good", rate=0):
        self.t = torrent
        self.mode = mode
        self.rate = rate
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.served = 0
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _recv(c, n):
        buf = b""
        while len(buf) < n:
            d = c.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _serve(self, c):
        try:
            hs = self._recv(c, 68)
            if hs[28:48] != self.t.info_hash:
                c.close()
                return
            c.sendall(b"\x13BitTorrent protocol" + bytes(8) + self.t.info_hash + b"-PY0001-" + os.urandom(12))
            nb = (self.t.n_pieces + 7) // 8
            bits = bytearray(b"\xff" * nb)
            spare = nb * 8 - self.t.n_pieces
            if spare:
                bits[-1] = (0xff << spare) & 0xff
            c.sendall(struct.pack(">IB", nb + 1, 5) + bytes(bits))
            c.sendall(struct.pack(">IB", 1, 1))  # unchoke
            start = time.time()
            sent = 0
            while not self.closed:
                ln = struct.unpack(">I", self._recv(c, 4))[0]
                if ln == 0:
                    continue
                body = self._recv(c, ln)
                if body[0] != 6:  # only requests matter
                    continue
                index, begin, length = struct.unpack(">III", body[1:13])
                if self.mode == "corrupt":
                    data = os.urandom(length)
                else:
                    data = self.t.read(index * self.t.piece_length + begin, length)
                c.sendall(struct.pack(">IBII", 9 + len(data), 7, index, begin) + data)
                sent += len(data)
                self.served += len(data)
                if self.rate:
                    ahead = sent / self.rate - (time.time() - start)
                    if ahead > 0:
                        time.sleep(ahead)
        except (EOFError, OSError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass
