"""interop_tracker.py — the HTTP tracker client (src/bt/tracker.c) against a tiny in-test
tracker (http.server on 127.0.0.1): the announce query (BEP 3 fields, compact=1 per BEP 23,
raw-byte URL encoding), compact peers, the dictionary peer list, BEP 7 peers6, failure
reason, interval/min interval, BEP 12 tiers (a dead tier-0 URL falls over to tier 1), HTTP
errors, a response over the size cap, a tracker slower than the timeout, malformed bodies.
Driven through bench_bt_netprobe (bench/bt_netprobe.c).
"""
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers_bt as hb  # noqa: E402
from helpers_bt import harness, bencode  # noqa: E402
from harness import check, check_eq  # noqa: E402

IH = bytes(range(0xF0, 0x100)) + b" &=%"  # bytes that must be %-escaped, 20 in all
assert len(IH) == 20

SEEN = []


def compact(*peers):
    return b"".join(socket.inet_aton(ip) + struct.pack(">H", port) for ip, port in peers)


RESPONSES = {
    "/ok": lambda q: bencode({"interval": 1800, "min interval": 60, "complete": 3, "incomplete": 4,
                              "peers": compact(("127.0.0.2", 6881), ("10.1.2.3", 51413), ("1.1.1.1", 0))}),
    "/dict": lambda q: bencode({"interval": 900, "peers": [
        {"ip": "127.0.0.5", "port": 7000, "peer id": b"A" * 20},
        {"ip": "::1", "port": 7001},
        {"ip": "tracker.example", "port": 7002},  # a name: never resolved, dropped
        {"ip": "127.0.0.6", "port": 70000},        # bad port: dropped
        {"port": 7003},                            # no ip: dropped
    ]}),
    "/six": lambda q: bencode({"interval": 100, "peers": b"",
                               "peers6": socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">H", 9000)}),
    "/fail": lambda q: bencode({"failure reason": "torrent not registered"}),
    "/warn": lambda q: bencode({"interval": 10, "warning message": "be nice", "peers": compact(("127.0.0.9", 1))}),
    "/garbage": lambda q: b"<html>not bencode</html>",
    "/odd": lambda q: bencode({"interval": 10, "peers": b"12345"}),
    "/nointerval": lambda q: bencode({"peers": b""}),
    "/big": lambda q: bencode({"interval": 10, "peers": b"\x7f\x00\x00\x01\x1a\xe1" * 200000}),
}


class Tracker(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True, encoding="latin-1")
        SEEN.append((u.path, u.query, q))
        if u.path == "/slow":
            time.sleep(3)
        if u.path == "/500" or u.path not in RESPONSES:
            body = b"oops"
            self.send_response(500 if u.path == "/500" else 404)
        else:
            body = RESPONSES[u.path](q)
            self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def announce(probe, urls, extra=(), timeout_ms=None):
    args = [probe, "announce"] + list(extra)
    if timeout_ms:
        args += ["--timeout-ms", str(timeout_ms)]
    args += [IH.hex(), "6881"] + list(urls)
    r = harness.run(args, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test():
    probe = hb.netprobe()
    srv = QuietServer(("127.0.0.1", 0), Tracker)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    try:
        # Query fields (BEP 3) and compact peers (BEP 23).
        rc, out, err = announce(probe, [base + "/ok"], ["--event", "started", "--left", "12345", "--numwant", "80"])
        check_eq(rc, 0, "announce /ok rc; " + out + err)
        path, query, q = SEEN[-1]
        check_eq(q["info_hash"][0].encode("latin-1"), IH, "info_hash decoded by the tracker")
        check_eq(len(q["peer_id"][0].encode("latin-1")), 20, "peer_id length")
        for k, v in (("port", "6881"), ("uploaded", "0"), ("downloaded", "0"), ("left", "12345"),
                     ("compact", "1"), ("event", "started"), ("numwant", "80")):
            check_eq(q.get(k, [None])[0], v, "query field " + k)
        check("%F0%F1" in query and "%20%26%3D%25" in query, "raw bytes %-escaped in the query: " + query)
        check("interval=1800 min_interval=60 complete=3 incomplete=4 peers=2" in out, "parsed /ok: " + out)
        check("peer 127.0.0.2:6881" in out and "peer 10.1.2.3:51413" in out, "compact peers: " + out)
        check("1.1.1.1" not in out, "a peer with port 0 is dropped: " + out)

        # A URL that already has a query (passkey) gets '&'.
        rc, out, err = announce(probe, [base + "/ok?passkey=abc"])
        check_eq(rc, 0, "announce with passkey")
        check(SEEN[-1][1].startswith("passkey=abc&info_hash="), "passkey kept first: " + SEEN[-1][1])
        check("event" not in SEEN[-1][2], "no event on a regular announce")

        # The original (non-compact) dictionary list, IPv6 literal, junk entries dropped.
        rc, out, err = announce(probe, [base + "/dict"])
        check_eq(rc, 0, "announce /dict rc; " + out + err)
        check("peers=2" in out and "peer 127.0.0.5:7000" in out and "peer [::1]:7001" in out, "dict peers: " + out)

        # BEP 7 peers6.
        rc, out, err = announce(probe, [base + "/six"])
        check("peer [::1]:9000" in out, "peers6: " + out)

        # failure reason.
        rc, out, err = announce(probe, [base + "/fail"])
        check(rc == 1 and "reason=torrent not registered" in out, "failure reason: " + out)

        rc, out, err = announce(probe, [base + "/warn"])
        check(rc == 0 and "warning=be nice" in out, "warning message: " + out)

        # Malformed bodies and HTTP errors.
        for p, what in (("/garbage", "malformed"), ("/odd", "multiple of 6"), ("/nointerval", "no interval"),
                        ("/500", "HTTP status 500"), ("/404", "HTTP status 404")):
            rc, out, err = announce(probe, [base + p])
            check(rc == 1 and what in out, "%s -> %s: %s" % (p, what, out))

        # Over the 1 MiB cap.
        rc, out, err = announce(probe, [base + "/big"])
        check(rc == 1 and "too large" in out, "response over the cap: " + out)

        # Slower than the timeout.
        t0 = time.time()
        rc, out, err = announce(probe, [base + "/slow"], timeout_ms=500)
        check(rc == 1 and "rc=-9" in out, "timeout: " + out)
        check(time.time() - t0 < 2.5, "timeout honoured (%.1fs)" % (time.time() - t0))

        # BEP 12: tier 0 has two dead URLs, tier 1 answers.
        dead = "http://127.0.0.1:%d/x" % harness.free_port()
        n0 = len(SEEN)
        rc, out, err = announce(probe, [dead + "," + base + "/500", base + "/ok"])
        check_eq(rc, 0, "fallback to tier 1: " + out)
        check("url=%s/ok" % base in out, "answered by tier 1: " + out)
        check_eq([s[0] for s in SEEN[n0:]], ["/500", "/ok"], "tried in order")

        # Bad input is data: every truncation and a sweep of byte flips of valid responses
        # parse to "ok" or a clean error, never a crash (the parser takes (ptr, len)).
        work = harness.tmpdir("sw-trk-parse-")
        samples = [RESPONSES[k](None) for k in ("/ok", "/dict", "/six", "/fail", "/warn")]
        n = 0
        for si, body in enumerate(samples):
            cases = [body[:k] for k in range(0, len(body), max(1, len(body) // 40))]
            cases += [body[:k] + bytes([body[k] ^ 0x5A]) + body[k + 1:] for k in range(0, len(body), max(1, len(body) // 25))]
            for ci, c in enumerate(cases):
                f = os.path.join(work, "r%d_%d" % (si, ci))
                with open(f, "wb") as fh:
                    fh.write(c)
                r = harness.run([probe, "parse", f], timeout=10)
                check(r.returncode in (0, 1), "parse of a mangled response (%r) exited %d: %s" % (c[:80], r.returncode,
                                                                                                 r.stderr[-500:]))
                check(r.stdout.startswith(("ok ", "error ", "failure ")), "parse output: %r" % r.stdout[:200])
                n += 1
        check(n > 100, "mangled responses tried: %d" % n)

        # Only HTTP(S) URLs are used.
        rc, out, err = announce(probe, ["udp://127.0.0.1:1/announce"])
        check(rc == 1 and "cannot start" in out, "udp-only tracker list: " + out)
    finally:
        srv.shutdown()


if __name__ == "__main__":
    harness.main(test)
