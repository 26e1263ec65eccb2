"""interop_shardswarm.py CLIENT [cli|session] — shardswarm against another BitTorrent client on loopback,
both directions, with a shard torrent made by `shardswarm torrent create` over a split
folder (synthetic shards + model.json, BEP 47 padded, v1 only):

  1. `shardswarm seed` serves, CLIENT downloads;
  2. CLIENT seeds, `shardswarm fetch --peer` downloads.

CLIENT: aria2 (aria2c finds the seeder through a mini tracker: it cannot be given a peer),
libtorrent (dials / is dialed directly), transmission (Transmission 3.00 never dials
127.0.0.0/8 peers: shardswarm dials it, `seed --peer` in direction 1), qbittorrent (told the
peer through its Web API).
With "session" the shardswarm side is bench_bt_netprobe session (the core's sw_bt_session
plus bt-net's glue, no CLI), which isolates the engine from the commands.
Each client gets its own 127.0.0.x. Every result is checked by SHA-256; every process is
stopped by PID (harness.Procs). Skips (77) when the client is not installed.
"""
import json
import re
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers_bt as hb  # noqa: E402
from helpers_bt import harness  # noqa: E402
from harness import check, check_eq, fail  # noqa: E402

TIMEOUT = 90


def pad_files(root, name, torrent):
    """aria2c 1.36 treats BEP 47 pad files as ordinary files: its seed tree needs the zeros."""
    t = hb.bdecode(open(torrent, "rb").read())
    for f in t[b"info"].get(b"files", []):
        if b"p" in f.get(b"attr", b""):
            p = os.path.join(root, name, *[c.decode() for c in f[b"path"]])
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as fh:
                fh.write(bytes(f[b"length"]))


class Ctx:
    pass


def setup(client):
    c = Ctx()
    c.client = client
    c.work = harness.tmpdir("sw-interop-%s-" % client)
    c.split = os.path.join(c.work, "split")
    c.names = hb.synthetic_split(c.split, sizes=(3 << 20, (2 << 20) + 12345, 700 * 1024 + 1))
    c.want = {n: hb.sha256_file(os.path.join(c.split, n)) for n in c.names}
    hb.shardswarm()
    c.torrent = hb.sw_torrent_create(c.split, os.path.join(c.work, "model.torrent"))
    c.name, files, c.piece_length, multi = hb.torrent_layout(c.torrent)
    check(multi, "a model torrent is multi-file")
    check_eq(sorted(files), sorted(c.names), "torrent files are the shards (pads excluded)")
    t = hb.bdecode(open(c.torrent, "rb").read())
    check(b"meta version" not in t[b"info"], "v1 only (aria2c 1.36 mishandles hybrid torrents)")
    c.seedroot = os.path.join(c.work, "client-seed")
    hb.client_tree(c.split, c.seedroot, c.name, c.names)
    return c


# ------------------------------------------------------------------ aria2c

def run_aria2(c, procs):
    hb.need_tool("aria2c", "aria2")
    tracker = hb.MiniTracker()
    try:
        # Direction 2 first: a failure of direction 1 must not hide its result.
        # 2. aria2c seeds (127.0.0.3), shardswarm dials it.
        pad_files(c.seedroot, c.name, c.torrent)
        pa = harness.free_port()
        a2 = procs.start("aria2-seed", hb.aria2_args(c.torrent, c.seedroot, pa, tracker=tracker.url, seed=True,
                                                     ip="127.0.0.3"))
        a2.wait_for(r"SEED|Seeding|seeding", timeout=60)
        fetch_from(c, procs, "127.0.0.1:%d" % pa, "aria2c")
        a2.stop()
        # 1. shardswarm seeds on 127.0.0.1; aria2c (127.0.0.2) learns it from the tracker.
        sp = harness.free_port()
        # Debug logging: the reasons connections close are logged at DEBUG.
        args = hb.sw_seed_args(c.torrent, c.split, sp)
        s = procs.start("sw-seed", args if hb.VIA == "session" else args + ["-v"], env={"SW_PROBE_DEBUG": "1"})
        hb.wait_port(sp, timeout=60, proc=s)
        tracker.static.append(("127.0.0.1", sp))
        out1 = os.path.join(c.work, "aria2-out")
        a = procs.start("aria2-fetch", hb.aria2_args(c.torrent, out1, harness.free_port(), tracker=tracker.url,
                                                     ip="127.0.0.2"))
        try:
            rc = a.p.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            closes = sorted(set(re.sub(r"\d+", "N", l.split(": ", 2)[-1])
                                for l in s.output().splitlines() if "closing" in l))
            fail("aria2c did not finish downloading from shardswarm in %ds; why shardswarm closed its "
                 "connections: %s" % (TIMEOUT, "; ".join(closes)[-1500:] or "(nothing logged)"))
        check_eq(rc, 0, "aria2c download from shardswarm: exit status; aria2c log:\n%s\nshardswarm log:\n%s"
                 % (a.output()[-2500:], s.output()[-2500:]))
        hb.check_outputs(out1, c.name, c.names, c.want, "shardswarm -> aria2c")

    finally:
        tracker.close()


# ------------------------------------------------------------------ libtorrent

def run_libtorrent(c, procs):
    hb.need_libtorrent()
    # 1. shardswarm seeds; libtorrent (127.0.0.2) dials it.
    sp = harness.free_port()
    s = procs.start("sw-seed", hb.sw_seed_args(c.torrent, c.split, sp))
    hb.wait_port(sp, timeout=60, proc=s)
    out1 = os.path.join(c.work, "lt-out")
    lt = procs.start("lt-fetch", hb.lt_args("fetch", c.torrent, out1, harness.free_port(),
                                            peers=["127.0.0.1:%d" % sp], bind="127.0.0.2",
                                            extra=["--timeout", str(TIMEOUT)]))
    lt.wait_for(r"complete [\d.]+", timeout=TIMEOUT + 10)
    hb.check_outputs(out1, c.name, c.names, c.want, "shardswarm -> libtorrent")
    lt.stop()
    s.stop()

    # 2. libtorrent seeds on 127.0.0.3; shardswarm dials it.
    pl = harness.free_port()
    ls = procs.start("lt-seed", hb.lt_args("seed", c.torrent, c.seedroot, pl, bind="127.0.0.3"))
    ls.wait_for(r"seeding", timeout=60)
    fetch_from(c, procs, "127.0.0.3:%d" % pl, "libtorrent")


# ------------------------------------------------------------------ Transmission

def rpc_transmission(port, method, args, session):
    body = json.dumps({"method": method, "arguments": args}).encode()
    for _ in range(3):
        req = urllib.request.Request("http://127.0.0.1:%d/transmission/rpc" % port, data=body,
                                     headers={"X-Transmission-Session-Id": session[0]})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 409:
                session[0] = e.headers.get("X-Transmission-Session-Id", "")
                continue
            raise
    fail("transmission rpc %s: no session id" % method)


def run_transmission(c, procs):
    td = hb.need_tool("transmission-daemon", "transmission-daemon")
    cfg = os.path.join(c.work, "tr-config")
    os.makedirs(cfg)
    rpc = harness.free_port()
    peer = harness.free_port()
    settings = {
        "bind-address-ipv4": "127.0.0.4", "bind-address-ipv6": "::1", "peer-port": peer,
        "peer-port-random-on-start": False, "port-forwarding-enabled": False, "dht-enabled": False,
        "lpd-enabled": False, "pex-enabled": False, "utp-enabled": False, "rpc-port": rpc,
        "rpc-bind-address": "127.0.0.1", "rpc-whitelist-enabled": False, "rpc-authentication-required": False,
        "rpc-host-whitelist-enabled": False, "download-dir": c.seedroot, "incomplete-dir-enabled": False,
        "encryption": 1, "message-level": 2, "start-added-torrents": True, "ratio-limit-enabled": False,
    }
    with open(os.path.join(cfg, "settings.json"), "w") as f:
        json.dump(settings, f)
    pad_files(c.seedroot, c.name, c.torrent)  # Transmission 3.00 has no BEP 47 either
    t = procs.start("transmission", [td, "-f", "-g", cfg, "--log-error"])
    hb.wait_port(rpc, timeout=30, proc=t)
    session = [""]
    import base64
    meta = base64.b64encode(open(c.torrent, "rb").read()).decode()
    r = rpc_transmission(rpc, "torrent-add", {"metainfo": meta, "download-dir": c.seedroot}, session)
    check_eq(r.get("result"), "success", "transmission torrent-add: %r" % r)
    tid = (r["arguments"].get("torrent-added") or r["arguments"].get("torrent-duplicate"))["id"]
    rpc_transmission(rpc, "torrent-verify", {"ids": [tid]}, session)
    deadline = time.time() + 60
    while time.time() < deadline:
        st = rpc_transmission(rpc, "torrent-get", {"ids": [tid], "fields": ["percentDone", "status", "error",
                                                                             "errorString"]}, session)
        tt = st["arguments"]["torrents"][0]
        if tt["percentDone"] >= 1.0 and tt["status"] in (5, 6):  # seed-wait / seeding
            break
        time.sleep(0.5)
    else:
        fail("transmission did not verify its seed: %r" % tt)
    # 2. Transmission seeds on 127.0.0.4, shardswarm dials it (it would never dial us).
    fetch_from(c, procs, "127.0.0.4:%d" % peer, "transmission")
    t.stop()

    # 1. shardswarm seeds and dials a leeching Transmission (127.0.0.8): `seed --peer`.
    cfg2 = os.path.join(c.work, "tr-config2")
    os.makedirs(cfg2)
    rpc2, peer2 = harness.free_port(), harness.free_port()
    out = os.path.join(c.work, "tr-out")
    settings.update({"bind-address-ipv4": "127.0.0.8", "peer-port": peer2, "rpc-port": rpc2, "download-dir": out})
    with open(os.path.join(cfg2, "settings.json"), "w") as f:
        json.dump(settings, f)
    t2 = procs.start("transmission-leech", [td, "-f", "-g", cfg2, "--log-error"])
    hb.wait_port(rpc2, timeout=30, proc=t2)
    hb.wait_port(peer2, host="127.0.0.8", timeout=30, proc=t2)
    session2 = [""]
    r = rpc_transmission(rpc2, "torrent-add", {"metainfo": meta, "download-dir": out}, session2)
    check_eq(r.get("result"), "success", "transmission torrent-add (leecher): %r" % r)
    # A handshake for a torrent Transmission has not finished adding is reset, and the
    # seeder dials a --peer once: wait until it is downloading.
    deadline = time.time() + 30
    while time.time() < deadline:
        st = rpc_transmission(rpc2, "torrent-get", {"fields": ["status"]}, session2)["arguments"]["torrents"]
        if st and st[0]["status"] == 4:
            break
        time.sleep(0.3)
    time.sleep(1)
    sp = harness.free_port()
    s = procs.start("sw-seed", hb.sw_seed_args(c.torrent, c.split, sp) + ["--peer", "127.0.0.8:%d" % peer2])
    deadline = time.time() + TIMEOUT
    tt = None
    while time.time() < deadline:
        st = rpc_transmission(rpc2, "torrent-get", {"fields": ["percentDone", "status"]}, session2)
        tt = st["arguments"]["torrents"][0]
        if tt["percentDone"] >= 1.0:
            break
        if not s.alive():
            fail("shardswarm seed exited:\n" + s.output()[-3000:])
        time.sleep(0.5)
    else:
        fail("Transmission did not complete from shardswarm in %ds: %r\nshardswarm log:\n%s"
             % (TIMEOUT, tt, s.output()[-3000:]))
    hb.check_outputs(out, c.name, c.names, c.want, "shardswarm -> transmission")


# ------------------------------------------------------------------ qBittorrent

def start_qbittorrent(c, procs, tag, ip, save, torrent_args):
    qb = hb.need_tool("qbittorrent-nox", "qbittorrent-nox")
    prof = os.path.join(c.work, "qb-" + tag)
    conf_dir = os.path.join(prof, "qBittorrent", "config")
    os.makedirs(conf_dir)
    port, web = harness.free_port(), harness.free_port()
    # The keys that make qbittorrent-nox usable headless on loopback (see issue 5).
    conf = "\n".join([
        "[LegalNotice]", "Accepted=true", "",
        "[BitTorrent]",
        "Session\\Port=%d" % port, "Session\\InterfaceAddress=%s" % ip,
        "Session\\DHTEnabled=false", "Session\\LSDEnabled=false", "Session\\PeXEnabled=false",
        "Session\\BTProtocol=TCP", "Session\\Encryption=0", "Session\\GlobalMaxRatio=-1",
        "Session\\DefaultSavePath=%s" % save, "Session\\AddTorrentPaused=false",
        "Session\\MaxConnections=-1", "Session\\MaxConnectionsPerTorrent=-1", "",
        "[Preferences]",
        "Connection\\ResolvePeerCountries=false", "WebUI\\Port=%d" % web, "WebUI\\Address=127.0.0.1",
        "WebUI\\LocalHostAuth=false", "WebUI\\CSRFProtection=false", "WebUI\\HostHeaderValidation=false",
        "General\\Locale=en", "Downloads\\SavePath=%s" % save, "",
    ])
    with open(os.path.join(conf_dir, "qBittorrent.conf"), "w") as f:
        f.write(conf)
    p = procs.start("qbittorrent-" + tag, [qb, "--profile=%s" % prof, "--webui-port=%d" % web,
                                            "--torrenting-port=%d" % port, "--save-path=%s" % save,
                                            "--skip-dialog=true"] + torrent_args + [c.torrent])
    hb.wait_port(web, timeout=60, proc=p)
    return p, port, web


def qb_api(web, path, form=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d/api/v2/%s" % (web, path), data=data,
                                 headers={"Referer": "http://127.0.0.1:%d" % web})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def qb_wait_state(web, ih, states, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            info = json.loads(qb_api(web, "torrents/info?hashes=" + ih))
            if info:
                last = info[0]
                if last.get("state") in states:
                    return last
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    fail("qBittorrent torrent %s never reached %s; last: %r" % (ih, states, last))


def run_qbittorrent(c, procs):
    ih = hb.info_hash_of(open(c.torrent, "rb").read())
    seeding = ("uploading", "stalledUP", "forcedUP", "queuedUP")
    # 1. shardswarm seeds; qBittorrent (127.0.0.6) is told the peer through its Web API.
    sp = harness.free_port()
    s = procs.start("sw-seed", hb.sw_seed_args(c.torrent, c.split, sp))
    hb.wait_port(sp, timeout=60, proc=s)
    out1 = os.path.join(c.work, "qb-out")
    q1, _, web1 = start_qbittorrent(c, procs, "leech", "127.0.0.6", out1, [])
    qb_wait_state(web1, ih, ("downloading", "stalledDL", "metaDL", "checkingDL") + seeding, 60)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        qb_api(web1, "torrents/addPeers", {"hashes": ih, "peers": "127.0.0.1:%d" % sp})
        info = json.loads(qb_api(web1, "torrents/info?hashes=" + ih))
        if info and info[0].get("progress", 0) >= 1.0:
            break
        time.sleep(2)
    qb_wait_state(web1, ih, seeding, 30)
    hb.check_outputs(out1, c.name, c.names, c.want, "shardswarm -> qBittorrent")
    q1.stop()
    s.stop()
    # 2. qBittorrent seeds on 127.0.0.7 (no hash check); shardswarm dials it.
    q2, qport, web2 = start_qbittorrent(c, procs, "seed", "127.0.0.7", c.seedroot, ["--skip-hash-check"])
    qb_wait_state(web2, ih, seeding, 60)
    fetch_from(c, procs, "127.0.0.7:%d" % qport, "qbittorrent")


# ------------------------------------------------------------------ common

def fetch_from(c, procs, peer, who):
    hb.sw_ready_or_fail("fetch")
    out = os.path.join(c.work, "sw-out-" + who)
    f = procs.start("sw-fetch-" + who, hb.sw_fetch_args(c.torrent, out, peers=[peer]))
    try:
        rc = f.p.wait(timeout=TIMEOUT)
    except Exception:
        fail("shardswarm fetch from %s did not finish in %ds; log:\n%s" % (who, TIMEOUT, f.output()[-3000:]))
    check_eq(rc, 0, "shardswarm fetch from %s: exit status; log:\n%s" % (who, f.output()[-3000:]))
    hb.check_outputs(out, c.name, c.names, c.want, "%s -> shardswarm" % who)


RUNNERS = {"aria2": run_aria2, "libtorrent": run_libtorrent, "transmission": run_transmission,
           "qbittorrent": run_qbittorrent}


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in RUNNERS or \
            (len(sys.argv) == 3 and sys.argv[2] not in ("cli", "session")):
        print("usage: interop_shardswarm.py %s [cli|session]" % "|".join(RUNNERS), file=sys.stderr)
        sys.exit(2)
    client = sys.argv[1]
    hb.VIA = sys.argv[2] if len(sys.argv) == 3 else "cli"
    # Skip early (before shardswarm is even asked) when the client is missing.
    tool = {"aria2": "aria2c", "transmission": "transmission-daemon", "qbittorrent": "qbittorrent-nox"}.get(client)
    if tool and not shutil.which(tool):
        harness.skip("%s not installed (scripts/install-deps installs it)" % tool)
    if client == "libtorrent":
        hb.need_libtorrent()

    def test():
        c = setup(client)
        hb.sw_ready_or_fail("seed")
        with harness.Procs() as procs:
            RUNNERS[client](c, procs)

    harness.main(test)


if __name__ == "__main__":
    main()
