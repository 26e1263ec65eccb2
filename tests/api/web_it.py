#!/usr/bin/env python3
"""web_it.py CASE — /metrics and the live dashboard of `shardswarm node --api`, on a 2-node
swarm of stories260K split in 2 (loopback only, ports from the kernel, every process stopped
by PID through harness.Procs).

Cases:
  metrics    /metrics parses as Prometheus text 0.0.4 (a strict parser below: every sample's
             family has a # TYPE before it, names and label names are valid, label values
             correctly escaped, values are floats, counters end in _total); ready 1, 2 shards,
             2 discovered, 1 loaded replica per shard, this node's shard and phase; after a
             `shardswarm generate --swarm` every counter is >= before and the process CPU
             seconds and the records accepted (the client joined) grew
  assets     /, /dashboard, /web/app.js, /web/app.css: 200, the right content types, bytes
             identical to web/ (embedded at build time); /metrics content type
  browser    Chromium (Debian's /usr/bin/chromium) driven by playwright-core
             (tests/api/dashboard_test.cjs): the dashboard shows "ready", 2 shard rows and
             both nodes, no console errors; node-supplied strings holding markup render as
             text; then this script kills the node of shard 1 (by PID) and the dashboard shows
             "not ready" with a reason naming shard 1. Skips (77) when chromium, node/npm or
             the npm registry (to install playwright-core into <build>/npm/playwright) are
             unavailable.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "swarm"))
import swarm_it as S  # noqa: E402
from swarm_it import check, fail, harness  # noqa: E402

PROMPT = "1 403 407 261 378 285 266 350 432 306 286"  # BOS + a story opening (stories260K)
HERE = os.path.dirname(os.path.abspath(__file__))

# ------------------------------------------------------------ strict exposition parser

NAME_RX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RX = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_float(s, where):
    """Go ParseFloat syntax as Prometheus accepts it: decimal/exponent floats, NaN, ±Inf."""
    if s in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(s.replace("Inf", "inf"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
        fail("%s: value %r is not a float" % (where, s))
    return float(s)


def parse_labels(s, where):
    """s: the text after '{' up to the end of the line; returns (labels dict, rest)."""
    labels, i = {}, 0
    while True:
        if s[i:i + 1] == "}":
            return labels, s[i + 1:]
        m = re.match(r"([^=]*)=\"", s[i:])
        check(m is not None, "%s: malformed labels at %r" % (where, s[i:]))
        name = m.group(1)
        check(LABEL_RX.match(name) is not None and not name.startswith("__"), "%s: bad label name %r" % (where, name))
        check(name not in labels, "%s: label %s twice" % (where, name))
        i += m.end()
        val = []
        while True:
            check(i < len(s), "%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                check(nxt in ("\\", "\"", "n"), "%s: bad escape \\%s in a label value" % (where, nxt))
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == "\"":
                i += 1
                break
            else:
                check(c != "\n", "%s: raw line feed in a label value" % where)
                val.append(c)
                i += 1
        labels[name] = "".join(val)
        if s[i:i + 1] == ",":
            i += 1
        else:
            check(s[i:i + 1] == "}", "%s: expected , or } after a label" % where)


def parse_metrics(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}; fails on any
    deviation from text format 0.0.4 that this exporter could produce."""
    check(text.endswith("\n"), "the exposition must end with a line feed")
    fams, order, seen_samples = {}, [], set()
    for ln, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (ln, line)
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                check(NAME_RX.match(name) is not None, "%s: bad metric name" % where)
                f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                if parts[1] == "TYPE":
                    check(f["type"] is None, "%s: second TYPE for %s" % (where, name))
                    check(not f["samples"], "%s: TYPE after samples of %s" % (where, name))
                    check(len(parts) == 4 and parts[3] in TYPES, "%s: bad type" % where)
                    f["type"] = parts[3]
                    order.append(name)
                else:
                    check(f["help"] is None, "%s: second HELP for %s" % (where, name))
                    h = parts[3] if len(parts) == 4 else ""
                    check(re.search(r"\\[^\\n]", h) is None, "%s: bad escape in HELP" % where)
                    f["help"] = h
            continue
        m = re.match(r"([^ {]+)(\{?)", line)
        name = m.group(1)
        check(NAME_RX.match(name) is not None, "%s: bad metric name %r" % (where, name))
        rest = line[m.end():]
        labels = {}
        if m.group(2):
            labels, rest = parse_labels(rest, where)
        parts = rest.strip().split()
        check(len(parts) in (1, 2), "%s: expected a value (and a timestamp)" % where)
        value = parse_float(parts[0], where)
        fam = name
        for suf in ("_bucket", "_sum", "_count"):  # histogram/summary children
            if name.endswith(suf) and name[:-len(suf)] in fams and fams[name[:-len(suf)]]["type"] in ("histogram", "summary"):
                fam = name[:-len(suf)]
        check(fam in fams and fams[fam]["type"], "%s: sample without a # TYPE for its family" % where)
        check(order[-1] == fam, "%s: samples of %s are not grouped after its TYPE" % (where, fam))
        key = (name, tuple(sorted(labels.items())))
        check(key not in seen_samples, "%s: duplicate sample" % where)
        seen_samples.add(key)
        if fams[fam]["type"] == "counter":
            check(name.endswith("_total"), "%s: a counter's name should end in _total" % where)
            check(value >= 0 and not math.isnan(value), "%s: negative counter" % where)
        fams[fam]["samples"].append((name, labels, value))
    return fams


def value(fams, name, **labels):
    check(name in fams, "metric %s missing" % name)
    for n, lb, v in fams[name]["samples"]:
        if n == name and all(lb.get(k) == str(w) for k, w in labels.items()):
            return v
    fail("metric %s%s has no sample" % (name, labels))


def counters(fams):
    return {(n, tuple(sorted(lb.items()))): v for f in fams.values() if f["type"] == "counter"
            for n, lb, v in f["samples"]}


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def metrics(node):
    st, ctype, body = get("http://127.0.0.1:%d/metrics" % node.api)
    check(st == 200, "/metrics status %d" % st)
    check(ctype == "text/plain; version=0.0.4; charset=utf-8", "/metrics content type %r" % ctype)
    return parse_metrics(body.decode("utf-8"))


# ------------------------------------------------------------ the swarm

def two_nodes(procs):
    S.node_supported()
    m = S.Model(harness.tmpdir("sw-web-"), 2, source=harness.shared_model())
    sw = S.Swarm(procs, m)
    a = sw.start("a", shard=0, cache_shards=[0])
    sw.boot = a.port
    b = sw.start("b", shard=1, cache_shards=[1])
    sw.wait_api()
    sw.wait_all_ready(timeout=60)
    return m, sw, a, b


def generate(procs, m, boot, n=24):
    args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model", m.torrent,
            "--prompt-ids", PROMPT, "-n", str(n), "--temp", "0", "--ids", "--ignore-eos", "--wait", "60"]
    c = procs.start("client", args)
    deadline = time.time() + 120
    while c.alive():
        if time.time() > deadline:
            fail("client did not finish within 120 s:\n%s" % c.output()[-3000:])
        time.sleep(0.05)
    check(c.p.returncode == 0, "client failed (rc %s):\n%s" % (c.p.returncode, c.output()[-3000:]))


# ------------------------------------------------------------ cases

def case_metrics():
    with harness.Procs() as procs:
        m, sw, a, b = two_nodes(procs)
        before = {}
        for name, node, shard in (("a", a, 0), ("b", b, 1)):
            f = metrics(node)
            check(value(f, "shardswarm_swarm_ready") == 1, "%s: shardswarm_swarm_ready" % name)
            check(value(f, "shardswarm_shards") == 2, "%s: shardswarm_shards" % name)
            check(value(f, "shardswarm_shards_discovered") == 2, "%s: shards discovered" % name)
            check(value(f, "shardswarm_shards_loaded") == 2, "%s: shards loaded" % name)
            check(value(f, "shardswarm_swarm_not_ready_reasons") == 0, "%s: reasons" % name)
            for s in (0, 1):
                check(value(f, "shardswarm_shard_loaded_replicas", shard=s) == 1, "%s: replicas of shard %d" % (name, s))
                check(value(f, "shardswarm_shard_size_bytes", shard=s) > 0, "%s: size of shard %d" % (name, s))
            check(value(f, "shardswarm_node_shard") == shard, "%s: node shard" % name)
            check(value(f, "shardswarm_node_phase", phase="loaded") == 1, "%s: phase loaded" % name)
            check(sum(v for _, lb, v in f["shardswarm_node_phase"]["samples"]) == 1, "%s: exactly one phase" % name)
            check(value(f, "shardswarm_peers") >= 1, "%s: peers" % name)
            check(value(f, "shardswarm_swarm_nodes", state="live") == 2, "%s: live nodes" % name)
            check(value(f, "shardswarm_shard_download_done_bytes") == value(f, "shardswarm_shard_download_size_bytes"),
                  "%s: shard file complete" % name)
            check(value(f, "process_resident_memory_bytes") > 1e6, "%s: RSS" % name)
            check(0 <= value(f, "shardswarm_uptime_seconds") < 600, "%s: uptime" % name)
            check(value(f, "shardswarm_build_info", version=value_version()) == 1, "%s: build info" % name)
            st = node.status()
            check(value(f, "shardswarm_node_info", node_id=st["node_id"], info_hash=st["info_hash"]) == 1,
                  "%s: node info labels" % name)
            for fam, d in f.items():
                check(d["help"], "%s: %s has no HELP" % (name, fam))
                check(fam.startswith("shardswarm_") or fam.startswith("process_"), "%s: %s prefix" % (name, fam))
            before[name] = f
        generate(procs, m, a.port)
        time.sleep(1.2)  # the status snapshot is rebuilt on changes and at least every second
        for name, node in (("a", a), ("b", b)):
            f = metrics(node)
            c0, c1 = counters(before[name]), counters(f)
            for k, v in c0.items():
                check(k in c1, "%s: counter %s vanished" % (name, k))
                check(c1[k] >= v, "%s: counter %s went down %s -> %s" % (name, k, v, c1[k]))
            cpu0 = value(before[name], "process_cpu_seconds_total")
            cpu1 = value(f, "process_cpu_seconds_total")
            check(cpu1 > cpu0, "%s: CPU seconds did not grow across a generation (%s -> %s)" % (name, cpu0, cpu1))
            r0 = value(before[name], "shardswarm_records_total", result="accepted")
            r1 = value(f, "shardswarm_records_total", result="accepted")
            check(r1 > r0, "%s: records accepted did not grow when the client joined (%s -> %s)" % (name, r0, r1))
            check(value(f, "shardswarm_swarm_ready") == 1, "%s: still ready" % name)
            # both stages computed the session: pipeline counters from the status "pipeline"
            s0 = value(before[name], "shardswarm_compute_steps_total")
            s1 = value(f, "shardswarm_compute_steps_total")
            check(s1 > s0, "%s: compute steps did not grow across a generation (%s -> %s)" % (name, s0, s1))
            check(value(f, "shardswarm_stage_sessions_opened_total") >= 1, "%s: no session opened" % name)
            check(value(f, "shardswarm_bt_peers") is not None, "%s: no BitTorrent figures" % name)
            print("%s: cpu %.4f -> %.4f s, records accepted %d -> %d, %d families" % (
                name, cpu0, cpu1, r0, r1, len(f)), file=sys.stderr)


def value_version():
    r = harness.run([harness.BIN, "--version"], timeout=10)
    m = re.search(r"(\d+\.\d+\.\d+)", r.stdout + r.stderr)
    check(m is not None, "shardswarm --version prints a version")
    return m.group(1)


def case_assets():
    with harness.Procs() as procs:
        m, sw, a, b = two_nodes(procs)
        base = "http://127.0.0.1:%d" % a.api
        want = {"/": ("index.html", "text/html; charset=utf-8"),
                "/dashboard": ("index.html", "text/html; charset=utf-8"),
                "/web/app.js": ("app.js", "text/javascript; charset=utf-8"),
                "/web/app.css": ("app.css", "text/css; charset=utf-8")}
        for path, (fname, ctype) in want.items():
            st, ct, body = get(base + path)
            check(st == 200, "%s: status %d" % (path, st))
            check(ct == ctype, "%s: content type %r, want %r" % (path, ct, ctype))
            with open(os.path.join(harness.SOURCE, "web", fname), "rb") as f:
                check(body == f.read(), "%s: bytes differ from web/%s" % (path, fname))
        # the page loads nothing from elsewhere: every src/href is same-origin or a data: URL
        html = get(base + "/")[2].decode()
        for ref in re.findall(r"(?:src|href)=\"([^\"]*)\"", html):
            check(ref.startswith("/") or ref.startswith("data:"), "external reference %r in index.html" % ref)
        try:
            get(base + "/web/nope.js")
            fail("an unknown asset must be 404")
        except urllib.error.HTTPError as e:
            check(e.code == 404, "unknown asset: %d" % e.code)


def playwright_dir():
    """<build>/npm/playwright with playwright-core installed (npm install when missing), or skip."""
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        harness.skip("Debian's chromium is not installed (%s): apt-get install chromium" % chromium)
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        harness.skip("node/npm not installed (apt-get install nodejs npm)")
    # a prefix of its own under <build>/npm: other tests install other packages into <build>/npm
    # and two npm installs into one prefix at once (ctest -j) can lose one of them
    d = os.path.join(S.BUILD, "npm", "playwright")
    if not os.path.exists(os.path.join(d, "node_modules", "playwright-core", "package.json")):
        os.makedirs(d, exist_ok=True)
        try:
            r = subprocess.run([npm, "install", "--prefix", d, "--no-audit", "--no-fund", "playwright-core"],
                               capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            harness.skip("npm install playwright-core timed out (npm registry unreachable?)")
        if r.returncode != 0:
            harness.skip("npm install playwright-core failed (registry unreachable?): %s" % r.stderr.strip()[-400:])
    return node, d, chromium


def case_browser():
    node, npm_dir, chromium = playwright_dir()
    with harness.Procs() as procs:
        m, sw, a, b = two_nodes(procs)
        env = dict(os.environ, SW_DASHBOARD_URL="http://127.0.0.1:%d/" % a.api, SW_NPM_DIR=npm_dir,
                   SW_CHROMIUM=chromium)
        js = subprocess.Popen([node, os.path.join(HERE, "dashboard_test.cjs")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
        out, killed = [], False
        deadline = time.time() + 120
        try:
            for line in js.stdout:  # the JS side asks for the kill, then prints PASS/FAIL
                out.append(line)
                sys.stderr.write("  js: " + line)
                if line.strip() == "KILL" and not killed:
                    b.proc.kill9()  # by PID
                    killed = True
                    js.stdin.write("KILLED\n")
                    js.stdin.flush()
                if time.time() > deadline:
                    fail("the browser test ran past 120 s")
            rc = js.wait(timeout=30)
        finally:
            if js.poll() is None:
                os.killpg(js.pid, 9)
                js.wait(timeout=5)
        text = "".join(out)
        if rc == 77:
            harness.skip("browser unavailable: " + text.strip()[-400:])
        check(rc == 0, "dashboard test failed (rc %s):\n%s" % (rc, text[-3000:]))
        check(killed, "the JS test never asked for the kill")


if __name__ == "__main__":
    cases = {"metrics": case_metrics, "assets": case_assets, "browser": case_browser}
    harness.main_cases(cases)
