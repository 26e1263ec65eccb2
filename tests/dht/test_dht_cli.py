"""test_dht_cli.py — `shardswarm dht` end to end on loopback: flag validation, two long-lived
nodes, announce/get-peers, BEP 44 put/get with increasing seq, --json output, a node
announcing at start (--announce), a warm restart from the saved routing table, timeouts."""
import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import harness as h  # noqa: E402


def dht(*args, timeout=60):
    return h.run([h.BIN, "dht"] + [str(a) for a in args], timeout=timeout)


def expect(r, rc, what, pattern=None):
    if r.returncode != rc:
        h.fail("%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s" % (what, r.returncode, rc, r.stdout, r.stderr))
    if pattern and not re.search(pattern, r.stdout + r.stderr, re.M):
        h.fail("%s: /%s/ not in output\nstdout:\n%s\nstderr:\n%s" % (what, pattern, r.stdout, r.stderr))
    return r


def test():
    if not os.path.exists(h.BIN):
        h.skip("shardswarm binary not built: %s" % h.BIN)
    tmp = h.tmpdir("sw-dht-cli-")
    ih = "0123456789abcdef0123456789abcdef01234567"

    # flag validation: usage errors exit 2 and name the flag; bad files exit 1 and name the file
    expect(dht(), 2, "no subcommand", r"missing subcommand")
    expect(dht("frob"), 2, "unknown subcommand", r"unknown subcommand 'frob'")
    expect(dht("get-peers", "xyz", "--bootstrap", "127.0.0.1:1"), 2, "bad hash", r"40 hex digits")
    expect(dht("get-peers", ih), 2, "no bootstrap", r"--bootstrap")
    expect(dht("get-peers", ih, "--bootstrap", "nocolon"), 2, "bad bootstrap", r"--bootstrap expects HOST:PORT")
    expect(dht("get-peers", ih, "--bootstrap", "127.0.0.1:1", "--timeout", "0"), 2, "bad timeout", r"--timeout")
    expect(dht("announce", ih, "70000", "--bootstrap", "127.0.0.1:1"), 2, "bad port", r"PORT")
    expect(dht("put", "v", "--bootstrap", "127.0.0.1:1"), 2, "put without key", r"--key")
    expect(dht("put", "v", "--salt", "s" * 65, "--key", "k", "--bootstrap", "127.0.0.1:1"), 2, "long salt", r"--salt")
    expect(dht("put", "v", "--key", os.path.join(tmp, "absent.key"), "--bootstrap", "127.0.0.1:1"), 1,
           "missing key file", r"absent\.key")
    bad_key = os.path.join(tmp, "bad.key")
    with open(bad_key, "w") as f:
        f.write("zz\n")
    expect(dht("put", "v", "--key", bad_key, "--bootstrap", "127.0.0.1:1"), 1, "corrupt key file", r"bad\.key")
    expect(dht("run", "--listen", "x"), 2, "bad listen port", r"--listen")
    expect(dht("ping", "nothost"), 2, "bad ping address", r"IP:PORT")
    expect(dht("run", "--announce", "abc:1"), 2, "bad --announce", r"--announce")
    expect(dht("--help"), 0, "help", r"usage: shardswarm dht")

    with h.Procs() as procs:
        pa, pb, pc = h.free_port(), h.free_port(), h.free_port()
        a = procs.start("A", [h.BIN, "dht", "run", "--listen", pa, "--bind", "127.0.0.1"])
        a.wait_for(r"listening udp %d" % pa, timeout=10)
        state = os.path.join(tmp, "b.nodes")
        b = procs.start("B", [h.BIN, "dht", "run", "--listen", pb, "--bind", "127.0.0.1", "--state", state,
                              "--bootstrap", "127.0.0.1:%d" % pa])
        b.wait_for(r"ready nodes [1-9]", timeout=20)
        ih2 = "fedcba9876543210fedcba9876543210fedcba98"
        c = procs.start("C", [h.BIN, "dht", "run", "--listen", pc, "--bind", "127.0.0.1", "--json",
                              "--bootstrap", "127.0.0.1:%d" % pb, "--announce", "%s:9999" % ih2])
        c.wait_for(r'"event":"ready"', timeout=20)
        boot = ["--bootstrap", "127.0.0.1:%d" % pa, "--timeout", "20"]

        r = expect(dht("ping", "127.0.0.1:%d" % pb, "--json"), 0, "ping")
        pong = json.loads(r.stdout.splitlines()[0])
        h.check_eq(pong["event"], "pong", "ping json")

        # announce through A, find through B's side of the network
        expect(dht("announce", ih, 7777, *boot), 0, "announce", r"stored [1-9]")
        r = expect(dht("get-peers", ih, "--json", *boot), 0, "get-peers")
        peers = [json.loads(line) for line in r.stdout.splitlines() if '"peer"' in line]
        h.check(any(p["addr"] == "127.0.0.1:7777" for p in peers), "announced peer not found: %s" % r.stdout)
        # the node that announced at start (--announce) is found too, with its given port
        expect(dht("get-peers", ih2, *boot), 0, "get-peers of --announce", r"^peer 127\.0\.0\.1:9999$")
        # a bootstrap node given by name is resolved (asynchronously, on the loop)
        expect(dht("get-peers", ih2, "--bootstrap", "localhost:%d" % pc, "--timeout", "20"), 0,
               "bootstrap by name", r"^peer 127\.0\.0\.1:9999$")
        # find-node reaches all three nodes
        r = expect(dht("find-node", ih, *boot), 0, "find-node")
        ports = set(int(p) for p in re.findall(r"^node [0-9a-f]{40} 127\.0\.0\.1:(\d+)$", r.stdout, re.M))
        h.check({pa, pb, pc} <= ports, "find-node saw %s" % sorted(ports))

        # BEP 44: put twice (seq 1 then 2), get returns the latest; immutable round trip
        key = os.path.join(tmp, "k")
        r = expect(dht("keygen", "--out", key), 0, "keygen", r"^public key [0-9a-f]{64}$")
        pk = r.stdout.split()[-1]
        h.check_eq(oct(os.stat(key).st_mode & 0o777), "0o600", "key file mode")
        expect(dht("put", "--key", key, "--salt", "cfg", "first", *boot), 0, "put 1", r"seq 1\b")
        expect(dht("put", "--key", key, "--salt", "cfg", "second", *boot), 0, "put 2", r"seq 2\b")
        r = expect(dht("get", pk, "--salt", "cfg", *boot), 0, "get")
        h.check(re.search(r"^value second$", r.stdout, re.M) and re.search(r"item seq 2 ", r.stdout), r.stdout)
        expect(dht("get", pk, "--salt", "other", *boot), 1, "get of absent item", r"no item found")
        expect(dht("put", "--key", key, "--salt", "cfg", "--seq", "1", "old", *boot), 1, "put of an old seq",
               r"no node stored it")
        r = expect(dht("put", "--immutable", "frozen", *boot), 0, "put immutable", r"stored [1-9]")
        target = re.search(r"done target ([0-9a-f]{40})", r.stdout).group(1)
        expect(dht("get", target, *boot), 0, "get immutable", r"^value frozen$")

        # warm restart: B saves its table on SIGTERM and rejoins from it without --bootstrap
        b.signal(signal.SIGTERM)
        b.p.wait(timeout=10)
        h.check(os.path.exists(state), "no state file written")
        with open(state) as f:
            text = f.read()
        h.check(text.startswith("sw-dht 1\nid ") and ("127.0.0.1:%d" % pa) in text, "state file: %r" % text)
        b2 = procs.start("B2", [h.BIN, "dht", "run", "--listen", pb, "--bind", "127.0.0.1", "--state", state])
        b2.wait_for(r"restored \d+ nodes", timeout=10)
        b2.wait_for(r"ready nodes [1-9]", timeout=20)
        old_id = re.search(r"id ([0-9a-f]{40})", b.output()).group(1)
        h.check(re.search(r"id %s" % old_id, b2.output()), "restart kept the node id")

    # BEP 32: the same over IPv6 loopback, when the host has it
    try:
        import socket
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.bind(("::1", 0))
        p6 = s6.getsockname()[1]
        s6.close()
    except OSError:
        p6 = None
        print("note: no IPv6 loopback; BEP 32 part skipped", file=sys.stderr)
    if p6:
        with h.Procs() as procs:
            v6 = procs.start("V6", [h.BIN, "dht", "run", "--ipv6", "--listen", p6, "--bind", "::1"])
            v6.wait_for(r"listening udp %d" % p6, timeout=10)
            boot6 = ["--ipv6", "--bootstrap", "[::1]:%d" % p6, "--timeout", "20"]
            expect(dht("announce", ih, 6543, *boot6), 0, "announce over IPv6", r"stored [1-9]")
            expect(dht("get-peers", ih, *boot6), 0, "get-peers over IPv6", r"^peer \[::1\]:6543$")

    # nothing answers: a bounded failure that says why
    r = expect(dht("get-peers", ih, "--bootstrap", "127.0.0.1:%d" % h.free_port(), "--timeout", "3"), 1,
               "unreachable bootstrap", r"never joined")


if __name__ == "__main__":
    h.main(test)
