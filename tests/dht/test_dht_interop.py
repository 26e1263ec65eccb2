"""test_dht_interop.py — shardswarm's DHT against libtorrent's (python3-libtorrent) on loopback.

Two `shardswarm dht run` nodes and three libtorrent DHT sessions form one small DHT on
127.0.0.1. Checked in both directions:
  * the nodes find each other (KRPC ping both ways, each side's routing table holds the other),
  * a peer announced by libtorrent is found by `shardswarm dht get-peers`, and a peer we
    announce is found by libtorrent's dht_get_peers,
  * a BEP 44 mutable item we put is read by libtorrent's dht_get_mutable_item, and one
    libtorrent puts (with the 64-byte expanded ed25519 key) is read by `shardswarm dht get`,
  * an immutable item both ways.
Skips (77) when `import libtorrent` fails.
"""
import hashlib
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness as h  # noqa: E402

try:
    import libtorrent as lt
except Exception as e:  # pragma: no cover
    h.skip("python3-libtorrent not importable (%s)" % e)


class LT:
    """One libtorrent session with DHT on 127.0.0.1:port, and its alert stream."""

    def __init__(self, port):
        self.port = port
        self.nid = None
        self.ses = lt.session({
            "listen_interfaces": "127.0.0.1:%d" % port,
            "enable_dht": True,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "dht_bootstrap_nodes": "",
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_prefer_verified_node_ids": False,
            "dht_enforce_node_id": False,
            "dht_ignore_dark_internet": False,
            "alert_mask": lt.alert.category_t.all_categories,
        })

    def drain(self, want, timeout=20, pred=None):
        """Pops alerts until one of type `want` (class name) passes pred; returns it or None."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.ses.wait_for_alert(200)
            for a in self.ses.pop_alerts():
                if self.nid is None:
                    m = re.search(r"node id: ([0-9a-f]{40})", a.message())
                    if m:
                        self.nid = bytes.fromhex(m.group(1))
                if type(a).__name__ == want and (pred is None or pred(a)):
                    return a
        return None

    def node_ports(self):
        """UDP ports of the nodes in this session's DHT routing table."""
        if self.nid is None:
            self.drain("none", timeout=1)
        if self.nid is None:
            return set()
        self.ses.dht_live_nodes(lt.sha1_hash(self.nid))
        a = self.drain("dht_live_nodes_alert", timeout=5)
        return set(n["endpoint"][1] for n in a.nodes) if a else set()


def lt_item(alert):
    """The decoded item of a libtorrent item alert, or None when it carries none."""
    try:
        item = alert.item
    except RuntimeError:  # an empty entry: the lookup found nothing
        return None
    if isinstance(item, dict):  # mutable: {key, value, signature, seq, salt, authoritative}
        item = item.get("value", item.get(b"value"))
    return item.encode() if isinstance(item, str) else item


def expanded_secret(seed):
    """libtorrent's 64-byte ed25519 secret: SHA-512(seed), clamped (RFC 8032 5.1.5)."""
    d = bytearray(hashlib.sha512(seed).digest())
    d[0] &= 248
    d[31] &= 127
    d[31] |= 64
    return bytes(d)


def sw(args, timeout=60, check_rc=0):
    t0 = time.time()
    verbose = os.environ.get("SW_TEST_VERBOSE") and args[0] != "keygen"
    r = h.run([h.BIN, "dht"] + args + (["-v"] if verbose else []), timeout=timeout)
    if verbose:
        print("%.1fs shardswarm dht %s -> %d\n%s" % (time.time() - t0, " ".join(args[:2]), r.returncode,
                                                     r.stderr), file=sys.stderr)
    if check_rc is not None and r.returncode != check_rc:
        h.fail("shardswarm dht %s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return r


def retry(what, fn, timeout=40):
    """Calls fn() until it returns a true value (bounded)."""
    t0 = time.time()
    deadline = t0 + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            print("ok (%.1fs): %s" % (time.time() - t0, what), file=sys.stderr)
            return last
        time.sleep(1)
    h.fail("%s: not within %ss (last: %r)" % (what, timeout, last))


def test():
    if not os.path.exists(h.BIN):
        h.skip("shardswarm binary not built: %s" % h.BIN)
    tmp = h.tmpdir("sw-dht-interop-")
    with h.Procs() as procs:
        pa, pb = h.free_port(), h.free_port()
        a = procs.start("swA", [h.BIN, "dht", "run", "--listen", pa, "--bind", "127.0.0.1"])
        a.wait_for(r"listening udp %d id ([0-9a-f]{40})" % pa, timeout=10)
        b = procs.start("swB", [h.BIN, "dht", "run", "--listen", pb, "--bind", "127.0.0.1",
                                "--bootstrap", "127.0.0.1:%d" % pa])
        b.wait_for(r"ready nodes", timeout=20)
        boot = ["--bootstrap", "127.0.0.1:%d" % pa, "--bootstrap", "127.0.0.1:%d" % pb, "--timeout", "30"]

        lports = [h.free_port(), h.free_port(), h.free_port()]
        sessions = []
        for i, p in enumerate(lports):
            s = LT(p)
            s.drain("none", timeout=0.5)
            s.ses.add_dht_node(("127.0.0.1", pa if i != 1 else pb))
            sessions.append(s)
        # libtorrent nodes bootstrap off ours; then they know each other and both of ours.
        for i, s in enumerate(sessions):
            retry("libtorrent session %d has both our nodes in its routing table" % i,
                  lambda s=s: {pa, pb} <= s.node_ports() and s.node_ports())
        # KRPC ping both ways
        for p in lports:
            r = sw(["ping", "127.0.0.1:%d" % p, "--timeout", "10"])
            h.check(re.search(r"^pong 127\.0\.0\.1:%d id [0-9a-f]{40}" % p, r.stdout, re.M), r.stdout)
        # and libtorrent sessions found each other through our nodes
        retry("each libtorrent session knows another libtorrent session",
              lambda: all(set(lports) & s.node_ports() for s in sessions))
        # our nodes hold the libtorrent nodes: a find_node through B returns them
        def ours_know_lt():
            r = sw(["find-node", "0" * 40, "--bootstrap", "127.0.0.1:%d" % pb, "--timeout", "20"], check_rc=None)
            got = set(int(p) for p in re.findall(r"^node [0-9a-f]{40} 127\.0\.0\.1:(\d+)$", r.stdout, re.M))
            return set(lports) <= got
        retry("a find_node lookup through our nodes reaches all libtorrent sessions", ours_know_lt)

        # 1. libtorrent announces an info-hash; we find the peer.
        ih1 = hashlib.sha1(b"shardswarm interop torrent one").digest()
        atp = lt.add_torrent_params()
        atp.info_hashes = lt.info_hash_t(lt.sha1_hash(ih1))
        atp.save_path = tmp
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        th = sessions[2].ses.add_torrent(atp)

        def found_lt_peer():
            th.force_dht_announce()
            r = sw(["get-peers", ih1.hex()] + boot, check_rc=None)
            if os.environ.get("SW_TEST_VERBOSE"):
                print("get-peers:", r.stdout, r.stderr, file=sys.stderr)
            return re.search(r"^peer 127\.0\.0\.1:%d$" % lports[2], r.stdout, re.M)
        retry("shardswarm get-peers finds the peer libtorrent announced", found_lt_peer, timeout=60)

        # 2. we announce; libtorrent finds us.
        ih2 = hashlib.sha1(b"shardswarm interop torrent two").digest()
        r = sw(["announce", ih2.hex(), "4321"] + boot)
        h.check(re.search(r"stored [1-9]", r.stdout), "announce stored nowhere: " + r.stdout)

        def lt_found_ours():
            sessions[1].ses.dht_get_peers(lt.sha1_hash(ih2))
            al = sessions[1].drain("dht_get_peers_reply_alert", timeout=10)
            return al is not None and ("127.0.0.1", 4321) in [tuple(p) for p in al.peers()]
        retry("libtorrent dht_get_peers finds the peer we announced", lt_found_ours)

        # 3. BEP 44 mutable: we put, libtorrent reads.
        key = os.path.join(tmp, "dht.key")
        r = sw(["keygen", "--out", key])
        pk = bytes.fromhex(re.search(r"public key ([0-9a-f]{64})", r.stdout).group(1))
        seed = bytes.fromhex(open(key).read().strip())
        r = sw(["put", "--key", key, "--salt", "interop", "from shardswarm"] + boot)
        h.check(re.search(r"stored [1-9]", r.stdout), "put stored nowhere: " + r.stdout)

        def lt_reads_ours():
            sessions[0].ses.dht_get_mutable_item(pk, b"interop")
            al = sessions[0].drain("dht_mutable_item_alert", timeout=10,
                                   pred=lambda x: lt_item(x) is not None)
            if os.environ.get("SW_TEST_VERBOSE"):
                print("lt get:", al and al.message(), al and repr(lt_item(al)), al and al.seq, file=sys.stderr)
            return al is not None and lt_item(al) == b"from shardswarm" and al.seq >= 1 and al
        al = retry("libtorrent reads the mutable item we put", lt_reads_ours)
        salt = al.salt.encode() if isinstance(al.salt, str) else bytes(al.salt)
        h.check_eq(salt, b"interop", "salt seen by libtorrent")

        # 4. libtorrent puts (seq 7, 64-byte expanded key); we read it.
        sk64 = expanded_secret(seed)
        value = b"from libtorrent"  # the binding bencodes it (as a string entry)
        sessions[1].ses.dht_put_mutable_item(sk64, pk, value, b"lt-salt")
        put = sessions[1].drain("dht_put_alert", timeout=30)
        h.check(put is not None and put.num_success > 0, "libtorrent's put reached no node")

        def we_read_lt():
            r = sw(["get", pk.hex(), "--salt", "lt-salt"] + boot, check_rc=None)
            return re.search(r"^value from libtorrent$", r.stdout, re.M) and r
        r = retry("shardswarm reads the mutable item libtorrent put", we_read_lt)
        h.check(re.search(r"item seq \d+ from", r.stdout), r.stdout)

        # 5. immutable items both ways
        target = sessions[2].ses.dht_put_immutable_item(b"immutable from libtorrent")
        sessions[2].drain("dht_put_alert", timeout=30)
        tgt = bytes.fromhex(str(target)) if not isinstance(target, bytes) else target
        retry("shardswarm reads libtorrent's immutable item",
              lambda: re.search(r"^value immutable from libtorrent$",
                                sw(["get", tgt.hex()] + boot, check_rc=None).stdout, re.M))
        r = sw(["put", "--immutable", "immutable from shardswarm"] + boot)
        want = hashlib.sha1(b"25:immutable from shardswarm").digest()

        def lt_reads_imm():
            sessions[0].ses.dht_get_immutable_item(lt.sha1_hash(want))
            al = sessions[0].drain("dht_immutable_item_alert", timeout=10)
            return al is not None and lt_item(al) == b"immutable from shardswarm"
        retry("libtorrent reads our immutable item", lt_reads_imm)

        for p in (a, b):
            h.check(p.alive(), "%s died" % p.name)
        for s in sessions:
            s.ses.pause()
        del sessions


if __name__ == "__main__":
    h.main(test)
