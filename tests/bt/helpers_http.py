"""helpers_http.py — a small HTTP/1.1 file server with Range and HEAD for the web seed tests
(BEP 19), plus fault modes, and helpers shared by the bt interop tests.

As a process (what the tests start through harness.Procs, so it is stopped by PID):
    python3 helpers_http.py --root DIR [--port N] [--mode MODE] [--bind 127.0.0.1]
prints "listening on PORT" once ready. MODE:
    normal     206 for "Range: bytes=a-b" (one range), 200 for whole files, 416 when unsatisfiable
    norange    ignores Range, always 200 with the whole file (a server without range support)
    short      206 headers but the body stops halfway (Content-Length says the full size)
    flaky      every 3rd request gets 503 with "Retry-After: 1"
    corrupt    206 with the right length but one byte flipped (a bad web seed)
    badrange   206 whose Content-Range starts one byte after the range asked for
Requests are logged (method, path, range, status) to stdout, one line each.
"""
import argparse
import os
import re
import shutil
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE_RX = re.compile(r"^bytes=(\d*)-(\d*)$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sw-test-http/1"

    def log_message(self, fmt, *args):  # quiet default logging; we log our own line
        pass

    def _path(self):
        raw = urllib.parse.urlsplit(self.path).path
        rel = urllib.parse.unquote(raw).lstrip("/")
        parts = [p for p in rel.split("/") if p]
        if any(p in ("..", ".") for p in parts):
            return None
        full = os.path.join(self.server.root, *parts)
        return full if os.path.isfile(full) else None

    def _log(self, status, rng):
        with self.server.lock:
            self.server.n_requests += 1
        print("%s %s range=%s status=%d" % (self.command, self.path, rng or "-", status), flush=True)

    def _send_error(self, code, extra=None):
        body = ("error %d\n" % code).encode()
        self.send_response(code)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, head):
        mode = self.server.mode
        rng = self.headers.get("Range")
        with self.server.lock:
            self.server.counter += 1
            n = self.server.counter
        if mode == "flaky" and n % 3 == 0:
            self._log(503, rng)
            return self._send_error(503, {"Retry-After": "1"})
        path = self._path()
        if path is None:
            self._log(404, rng)
            return self._send_error(404)
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        if rng and mode != "norange":
            m = RANGE_RX.match(rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                self._log(416, rng)
                return self._send_error(416, {"Content-Range": "bytes */%d" % size})
            if m.group(1) == "":  # suffix range: last N bytes
                start, end = max(0, size - int(m.group(2))), size - 1
            else:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
                end = min(end, size - 1)
            if start >= size or start > end:
                self._log(416, rng)
                return self._send_error(416, {"Content-Range": "bytes */%d" % size})
            status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Accept-Ranges", "none" if mode == "norange" else "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            shift = 1 if mode == "badrange" else 0
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start + shift, end + shift, size))
        self.end_headers()
        self._log(status, rng)
        if head or length == 0:
            return
        send = length // 2 if mode == "short" else length
        with open(path, "rb") as f:
            f.seek(start)
            left = send
            first = True
            while left > 0:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                if mode == "corrupt" and first:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    first = False
                self.wfile.write(chunk)
                left -= len(chunk)
        if mode == "short":
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def do_GET(self):
        try:
            self._serve(False)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self):
        self._serve(True)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that hangs up (a cancelled range request) is normal here.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, addr, root, mode="normal"):
        super().__init__(addr, Handler)
        self.root = root
        self.mode = mode
        self.lock = threading.Lock()
        self.counter = 0
        self.n_requests = 0


def start_in_thread(root, mode="normal", bind="127.0.0.1"):
    """For tests that want the server in-process: returns (server, port)."""
    srv = Server((bind, 0), root, mode)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, srv.server_address[1]


# ------------------------------------------------------------------ shared test helpers

def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def make_random_file(path, size, seed=1):
    """Deterministic pseudo-random bytes (fast: a repeated-free stream from random.Random)."""
    import random
    r = random.Random(seed)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(r.randbytes(n))
            left -= n


def which(name):
    return shutil.which(name)


def main():
    ap = argparse.ArgumentParser(description="range-capable test HTTP server")
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--mode", default="normal", choices=["normal", "norange", "short", "flaky", "corrupt", "badrange"])
    a = ap.parse_args()
    if not os.path.isdir(a.root):
        print("helpers_http: --root: not a folder: %s" % a.root, file=sys.stderr)
        sys.exit(2)
    srv = Server((a.bind, a.port), a.root, a.mode)
    print("listening on %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
