#!/usr/bin/env python3
"""auth_it.py — a node's API with a key (--api-key-file; docs/api.md "API key").

A 2-node stories260K swarm whose first node serves its API with a key: /health and the
dashboard's static files answer without it; /swarm/status, /metrics and /v1 answer 401
(the OpenAI error object with code invalid_api_key, and a WWW-Authenticate header) without
or with a wrong key, and 200 with it; `shardswarm status` works with $SHARDSWARM_API_KEY and
fails naming HTTP 401 without; a completion through the key matches no-key output.
Bad key files are refused at start naming the file.
"""
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "swarm"))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

KEY = "sk-test_0123456789abcdef"


def get(port, method, path, key=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = "Bearer " + key
    c.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def main():
    S.node_supported()
    d = harness.tmpdir("sw-auth-")
    keyfile = os.path.join(d, "api.key")
    with open(keyfile, "w") as f:
        f.write("  %s  \n# ignored\n" % KEY)
    env_no_key = dict(os.environ)
    env_no_key.pop("SHARDSWARM_API_KEY", None)
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-auth-m-"), 2, source=harness.shared_model())
        a = P.start_node(procs, m, "a", 0, api=True, extra=["--api-key-file", keyfile])
        b = P.start_node(procs, m, "b", 1, a.port)
        for n in (a, b):
            n.proc.wait_for(r"shard \d+ loaded", timeout=60)
        a.proc.wait_for(r"\[READY\]", timeout=60)
        st, _, _ = get(a.api, "GET", "/health")
        check(st == 200, "/health without a key: %s" % st)
        for path in ("/", "/dashboard", "/web/app.js"):
            st, _, _ = get(a.api, "GET", path)
            check(st == 200, "%s without a key: %s" % (path, st))
        for method, path, body in (("GET", "/swarm/status", None), ("GET", "/metrics", None),
                                   ("GET", "/v1/models", None),
                                   ("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 4})):
            for key in (None, "wrong", KEY[:-1], KEY + "x"):
                st, hd, data = get(a.api, method, path, key, body)
                check(st == 401, "%s %s with key %r: %s" % (method, path, key, st))
                check("Bearer" in hd.get("WWW-Authenticate", ""), "%s: no WWW-Authenticate: %s" % (path, hd))
                if path.startswith("/v1/"):
                    e = json.loads(data)["error"]
                    check(e["code"] == "invalid_api_key" and "Authorization" in e["message"], "%s error: %s" % (path, e))
            st, _, data = get(a.api, method, path, KEY, body)
            check(st == 200, "%s %s with the key: %s %s" % (method, path, st, data[:300]))
        # the same completion with the key equals the single-process text
        st, _, data = get(a.api, "POST", "/v1/completions", KEY,
                          {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0})
        got = json.loads(data)["choices"][0]["text"]
        ref = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "-p", "Once upon a time", "-n", "20",
                           "--temp", "0", "--no-echo", "-t", "1"], timeout=60, check_rc=0).stdout
        check(ref.startswith(got) and got, "completion with the key: %r vs %r" % (got, ref))
        # the CLI sends $SHARDSWARM_API_KEY
        url = "http://127.0.0.1:%d" % a.api
        r = harness.run([harness.BIN, "status", "--api", url], timeout=30, env=env_no_key)
        check(r.returncode == 1 and "401" in r.stderr, "status without the key: rc %s %s" % (r.returncode, r.stderr))
        r = harness.run([harness.BIN, "status", "--api", url], timeout=30, env=dict(env_no_key, SHARDSWARM_API_KEY=KEY))
        check(r.returncode == 0 and "READY" in r.stdout, "status with the key: rc %s %s %s" % (r.returncode, r.stdout,
                                                                                            r.stderr))
        # bad key files: exit 1 naming the file; --api-key-file without --api: usage error
        bad = os.path.join(d, "bad.key")
        for content in ("", "has space\n", "x" * 300):
            with open(bad, "w") as f:
                f.write(content)
            r = harness.run([harness.BIN, "node", "--model", m.torrent, "--cache", d, "--api", "0",
                             "--api-key-file", bad], timeout=30)
            check(r.returncode == 1 and "bad.key" in r.stderr, "bad key file %r: rc %s %s" % (content[:10], r.returncode,
                                                                                              r.stderr))
        r = harness.run([harness.BIN, "node", "--model", m.torrent, "--cache", d, "--api-key-file", keyfile], timeout=30)
        check(r.returncode == 2 and "--api-key-file" in r.stderr, "no --api: rc %s %s" % (r.returncode, r.stderr))
    print("auth: 401 without or with a wrong key on status/metrics/v1, 200 with it; open /health and dashboard files",
          file=sys.stderr)


if __name__ == "__main__":
    harness.main(main)
