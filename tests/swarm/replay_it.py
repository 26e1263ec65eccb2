#!/usr/bin/env python3
"""replay_it.py — a captured owner command cannot be replayed, not even after a restart
(issue 13: the nonces once lived only in memory, and a relay answered a replay 200
"forwarded"). docs/security.md.

Two nodes of a 2-way stories260K split with an owner key, APIs on. `shardswarm drain` is
pointed at a capturing HTTP server (it proxies GET /swarm/status to the real node and keeps
the POSTed command): that is the command as seen on the wire. Sent to its target's API it is
accepted once, then refused (403 "replayed"); a second captured command sent through the
other node is forwarded once, then refused (403, not 200 "forwarded"). Both nodes are
restarted on the same cache folders: both replays are still refused (the nonces are kept in
<cache>/owner-nonces).
"""
import http.server
import json
import os
import sys
import threading
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402


class Capture:
    """An HTTP server standing in for a node's API: status from the real node, POSTs kept."""

    def __init__(self, real_api):
        self.bodies = []
        cap = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % cap.real_api, timeout=5) as r:
                    data = r.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                cap.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                data = b'{"ok":true,"detail":"captured"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.real_api = real_api
        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.th = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.th.start()

    def capture_drain(self, target_id, key):
        r = harness.run([harness.BIN, "drain", "--api", str(self.port), "--node", target_id, "--owner-key", key],
                        timeout=30)
        check(r.returncode == 0, "drain via the capture server: %s %s" % (r.stdout, r.stderr))
        return self.bodies[-1]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def post(api, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (api, path), data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start(procs, m, name, cache, shard, boot=None, loaded=True):
    args = [harness.BIN, "node", "--model", m.torrent, "--cache", cache, "--listen", "0", "--threads", "1",
            "--shard", str(shard), "--api", "0"]
    if boot:
        args += ["--bootstrap", "127.0.0.1:%d" % boot]
    n = S.Node(procs.start(name, args), None, None, cache)
    n.resolve()
    if loaded:
        n.proc.wait_for(r"shard \d+ loaded", timeout=60)
    return n


def main():
    S.node_supported()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-replay-m-"), 2, source=harness.shared_model())
        ca, cb = m.cache("a", [0]), m.cache("b", [1])
        a = start(procs, m, "a", ca, 0)
        b = start(procs, m, "b", cb, 1, a.port)
        b_id = b.status()["node_id"]
        a.proc.wait_for(r"\[READY\]", timeout=60)  # a knows b: it forwards toward it
        cap = Capture(b.api)
        try:
            direct = cap.capture_drain(b_id, m.owner_key)
            relayed = cap.capture_drain(b_id, m.owner_key)
        finally:
            cap.close()
        check(json.loads(direct)["command"] != json.loads(relayed)["command"], "two captures, two nonces")
        st, text = post(b.api, "/swarm/drain", direct)
        check(st == 200 and "accepted" in text, "the captured DRAIN at its target: %d %s" % (st, text))
        st, text = post(b.api, "/swarm/drain", direct)
        check(st == 403 and "replayed" in text, "the same DRAIN again: %d %s" % (st, text))
        st, text = post(a.api, "/swarm/drain", relayed)
        check(st == 200 and "forwarded" in text, "a second DRAIN through the other node: %d %s" % (st, text))
        st, text = post(a.api, "/swarm/drain", relayed)
        check(st == 403 and "replayed" in text, "the forwarded DRAIN again: %d %s (once 200 'forwarded')" % (st, text))
        print("replay: accepted once, forwarded once; each replay refused (403 replayed)", file=sys.stderr)
        for n in (a, b):
            n.proc.stop()
        a = start(procs, m, "a-restarted", ca, 0)
        b = start(procs, m, "b-restarted", cb, 1, a.port, loaded=False)  # still drained
        st, text = post(b.api, "/swarm/drain", direct)
        check(st == 403 and "replayed" in text, "the DRAIN replayed after its target restarted: %d %s" % (st, text))
        st, text = post(a.api, "/swarm/drain", relayed)
        check(st == 403 and "replayed" in text, "the forwarded DRAIN replayed after a restart: %d %s" % (st, text))
        check(os.path.getsize(os.path.join(cb, "owner-nonces")) < 4096, "the nonce file stays small")
        print("replay: after both nodes restarted, both replays refused (nonces in <cache>/owner-nonces)",
              file=sys.stderr)


if __name__ == "__main__":
    harness.main(main)
