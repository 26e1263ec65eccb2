#!/usr/bin/env python3
"""guard_it.py — the node's API holds up and cannot be driven by web pages (issue 13,
docs/security.md). One light node (stories260K torrent, no shard) with --api; each case is a
reproduction of an attack that once worked:

  slowloris  300 connections from 30 addresses (127.0.3.x) send half a request line and drip
             one byte every 2 s; 40 more from one address: meanwhile a normal request is
             answered within 2 s; the ones from one address beyond 16 get 429 at once; the
             dripping ones are closed (408) after the 5 s header deadline.
  slowbody   20 POSTs with complete headers whose body drips a byte every 2 s: a normal request
             is answered meanwhile; each is closed once its body is over 10 s late.
  csrf       what a web page can send: POST text/plain (the OpenAI route and an owner command)
             gets 415; a foreign Origin on a POST gets 403 (with the same Origin allowed by
             --api-allow-origin it passes the check); a foreign Host (DNS rebinding) gets 403
             on GET too, 'localhost', IP literals and --api-allow-host names pass; every error
             names the flag that allows it.
"""
import http.client
import json
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "swarm"))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

ALLOWED_ORIGIN = "https://app.example"
ALLOWED_HOST = "node.example"


def start(procs):
    m = S.Model(harness.tmpdir("sw-guard-m-"), 2, source=harness.shared_model())
    return P.start_node(procs, m, "api", -1, api=True,
                        extra=["--api-allow-origin", ALLOWED_ORIGIN, "--api-allow-host", ALLOWED_HOST])


def req(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, dict(r.getheaders()), data


def case_slowloris():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    with harness.Procs() as procs:
        n = start(procs)
        socks = []
        try:
            for k in range(300):
                s = socket.socket()
                s.bind(("127.0.3.%d" % (1 + k // 10), 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", n.api))
                s.sendall(b"GET /swarm/status HTTP/1.1\r\nHo")
                socks.append(s)
            one = []
            for k in range(40):
                s = socket.socket()
                s.bind(("127.0.0.7", 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", n.api))
                s.sendall(b"GET /health HTTP/1.1\r\nHo")
                one.append(s)
            t0 = time.time()
            st, _, body = req(n.api, "GET", "/swarm/status", timeout=10)
            dt = time.time() - t0
            print("slowloris: 340 dripping connections held; GET /swarm/status -> %d in %.0f ms" % (st, dt * 1e3),
                  file=sys.stderr)
            check(st == 200 and dt < 2.0, "a normal request beside 340 slow ones: %d in %.1f s" % (st, dt))
            # one address: beyond its 16 unfinished requests, 429 at once
            n429 = 0
            for s in one:
                r, _, _ = select.select([s], [], [], 0.5)
                if r and s.recv(4096).startswith(b"HTTP/1.1 429"):
                    n429 += 1
            print("slowloris: 40 from 127.0.0.7: %d answered 429 at once" % n429, file=sys.stderr)
            check(n429 >= 40 - 16, "only %d of 40 connections from one address got 429" % n429)
            # drip: a byte every 2 s; the header deadline (5 s) closes them anyway
            deadline_seen = 0
            t0 = time.time()
            while time.time() - t0 < 9 and deadline_seen < len(socks):
                time.sleep(2)
                for s in socks:
                    try:
                        s.send(b"s")
                    except OSError:
                        pass
                deadline_seen = 0
                for s in socks:
                    r, _, _ = select.select([s], [], [], 0)
                    if r:
                        deadline_seen += 1
            got408 = 0
            for s in socks:
                try:
                    if s.recv(4096).startswith(b"HTTP/1.1 408"):
                        got408 += 1
                except OSError:
                    pass
            print("slowloris: after %.0f s, %d of 300 dripping connections were answered 408 and closed"
                  % (time.time() - t0, got408), file=sys.stderr)
            check(got408 == 300, "only %d of 300 dripping connections got 408" % got408)
            st, _, _ = req(n.api, "GET", "/health")
            check(st == 200, "/health after the attack: %d" % st)
        finally:
            for s in socks:
                s.close()


def case_slowbody():
    """20 POSTs whose headers are complete and whose body drips a byte every 2 s: a normal
    request is answered meanwhile, and each drip is closed once its body is 10 s late."""
    with harness.Procs() as procs:
        n = start(procs)
        socks = []
        try:
            for k in range(20):
                s = socket.socket()
                s.bind(("127.0.5.%d" % (1 + k), 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", n.api))
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{")
                socks.append(s)
            t0 = time.time()
            st, _, _ = req(n.api, "GET", "/swarm/status", timeout=10)
            check(st == 200 and time.time() - t0 < 2.0, "a request beside 20 dripping bodies: %d" % st)
            closed, t0 = set(), time.time()
            while time.time() - t0 < 16 and len(closed) < len(socks):
                time.sleep(2)
                for s in socks:
                    if s in closed:
                        continue
                    try:
                        s.send(b" ")
                        r, _, _ = select.select([s], [], [], 0)
                        if r and not s.recv(4096):
                            closed.add(s)
                    except OSError:
                        closed.add(s)
            print("slowbody: %d of 20 dripping bodies closed after %.0f s" % (len(closed), time.time() - t0),
                  file=sys.stderr)
            check(len(closed) == 20, "only %d of 20 dripping bodies were closed" % len(closed))
        finally:
            for s in socks:
                s.close()


def case_csrf():
    with harness.Procs() as procs:
        n = start(procs)
        completion = json.dumps({"prompt": "Once", "max_tokens": 1})
        command = json.dumps({"command": "00" * 40})
        # a form or fetch() without preflight: text/plain, urlencoded, multipart, none
        for path, body in (("/v1/completions", completion), ("/swarm/load-shard", command), ("/swarm/drain", command)):
            for ct in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
                st, _, text = req(n.api, "POST", path, body, {"Content-Type": ct} if ct else {})
                check(st == 415 and "application/json" in text, "POST %s as %s: %d %s" % (path, ct, st, text[:200]))
        print("csrf: POST bodies other than application/json -> 415", file=sys.stderr)
        # a foreign Origin may not write; the same origin and an allowed one may
        st, _, text = req(n.api, "POST", "/swarm/load-shard", command,
                          {"Content-Type": "application/json", "Origin": "http://evil.example"})
        check(st == 403 and "--api-allow-origin" in text, "foreign Origin: %d %s" % (st, text[:200]))
        st, _, text = req(n.api, "POST", "/swarm/load-shard", command,
                          {"Content-Type": "application/json", "Origin": "null"})
        check(st == 403, "Origin null: %d %s" % (st, text[:200]))
        for origin in ("http://127.0.0.1:%d" % n.api, ALLOWED_ORIGIN, None):
            h = {"Content-Type": "application/json"}
            if origin:
                h["Origin"] = origin
            st, _, text = req(n.api, "POST", "/swarm/load-shard", command, h)
            # past the guards: the command itself is refused (40 zero bytes are no command)
            check(st == 400, "Origin %s: %d %s" % (origin, st, text[:200]))
        print("csrf: foreign and null Origin -> 403; same, allowed and no Origin pass", file=sys.stderr)
        # DNS rebinding: a name that is not this machine's, on reads too
        for host in ("evil.example", "evil.example:%d" % n.api, "localhost.evil.example"):
            st, _, text = req(n.api, "GET", "/swarm/status", headers={"Host": host})
            check(st == 403 and "--api-allow-host" in text, "Host %s: %d %s" % (host, st, text[:200]))
        for host in ("localhost:%d" % n.api, "127.0.0.1", "[::1]:%d" % n.api, "a.localhost", ALLOWED_HOST,
                     "%s:%d" % (ALLOWED_HOST, n.api)):
            st, _, text = req(n.api, "GET", "/swarm/status", headers={"Host": host})
            check(st == 200, "Host %s: %d %s" % (host, st, text[:200]))
        print("csrf: foreign Host -> 403; localhost, IP literals, *.localhost, --api-allow-host pass",
              file=sys.stderr)
        out = n.proc.output()
        check("refused: cross-origin" in out, "the node logs refusals:\n" + out[-1500:])


if __name__ == "__main__":
    harness.main_cases({"slowloris": case_slowloris, "slowbody": case_slowbody, "csrf": case_csrf})
