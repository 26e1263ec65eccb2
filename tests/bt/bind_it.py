"""bind_it.py — `--bind ADDR` on node, seed and fetch: BitTorrent (TCP) and the DHT (UDP)
listen on that address only (read back from /proc/net/tcp and /proc/net/udp); without it
they listen on 0.0.0.0 as before; a bad address is a usage error naming the flag, and an
address this machine does not have is a start-up failure naming it."""
import os
import re
import shutil
import time

import harness as h


def sockets(port):
    """Local addresses ("127.0.0.1", "0.0.0.0", ...) of TCP listeners and UDP sockets on port."""
    found = {"tcp": set(), "udp": set()}
    for proto in ("tcp", "udp"):
        with open("/proc/net/" + proto) as f:
            next(f)
            for line in f:
                cols = line.split()
                addr, p = cols[1].split(":")
                state = cols[3]
                if int(p, 16) != port or (proto == "tcp" and state != "0A"):  # 0A: LISTEN
                    continue
                ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))  # little-endian hex
                found[proto].add(ip)
    return found


def main():
    tmp = h.tmpdir("sw-bind-")
    try:
        split = os.path.join(tmp, "split")
        h.run([h.BIN, "split", h.shared_model(), "--shards", "2", "--out", split], check_rc=0)
        torrent = os.path.join(split, "model.torrent")

        def cache(name):
            c = os.path.join(tmp, name)
            os.makedirs(os.path.join(c, "shards"))
            shutil.copyfile(os.path.join(split, "shard-0.gguf"), os.path.join(c, "shards", "shard-0.gguf"))
            return c

        # bad input: usage errors (exit 2) that name the flag, before anything starts
        for bad in ("localhost", "127.0.0.1:7000", "300.1.1.1", ""):
            r = h.run([h.BIN, "node", "--model", torrent, "--cache", os.path.join(tmp, "x"), "--bind", bad],
                      check_rc=2)
            h.check("--bind expects an IP address" in r.stderr and repr(bad)[1:-1] in r.stderr,
                    "node --bind %r: %s" % (bad, r.stderr))
        r = h.run([h.BIN, "seed", torrent, "--bind", "nowhere"], check_rc=2)
        h.check("--bind expects an IP address" in r.stderr, "seed --bind nowhere: %s" % r.stderr)
        r = h.run([h.BIN, "fetch", torrent, "--bind", "1.2.3"], check_rc=2)
        h.check("--bind expects an IP address" in r.stderr, "fetch --bind 1.2.3: %s" % r.stderr)
        # an address of no interface here (TEST-NET-1): start-up fails and says which
        r = h.run([h.BIN, "node", "--model", torrent, "--cache", cache("c-far"), "--shard", "0",
                   "--bind", "192.0.2.1"], check_rc=1, timeout=30)
        h.check("192.0.2.1" in r.stdout + r.stderr, "node --bind 192.0.2.1 names the address:\n%s%s"
                % (r.stdout[-1500:], r.stderr[-1500:]))

        with h.Procs() as ps:
            bound = ps.start("node-bound", [h.BIN, "node", "--model", torrent, "--cache", cache("c-bound"),
                                            "--shard", "0", "--listen", 0, "--bind", "127.0.0.1"])
            port = int(bound.wait_for(r"listening on port (\d+)", timeout=30).group(1))
            s = sockets(port)
            print("node --bind 127.0.0.1, port %d: %s" % (port, s))
            h.check_eq(s["tcp"], {"127.0.0.1"}, "BitTorrent TCP listener of node --bind 127.0.0.1")
            h.check_eq(s["udp"], {"127.0.0.1"}, "DHT UDP socket of node --bind 127.0.0.1")

            # a second node joins through the bound one: the swarm still works over 127.0.0.1
            other = ps.start("node-any", [h.BIN, "node", "--model", torrent, "--cache", cache("c-any"),
                                          "--shard", "0", "--listen", 0, "--bootstrap", "127.0.0.1:%d" % port])
            port2 = int(other.wait_for(r"listening on port (\d+)", timeout=30).group(1))
            s2 = sockets(port2)
            print("node without --bind, port %d: %s" % (port2, s2))
            h.check_eq(s2["tcp"], {"0.0.0.0"}, "BitTorrent TCP listener of a node without --bind")
            h.check_eq(s2["udp"], {"0.0.0.0"}, "DHT UDP socket of a node without --bind")

            seed = ps.start("seed", [h.BIN, "seed", torrent, "--dir", split, "--bind", "127.0.0.1",
                                     "--bootstrap", "127.0.0.1:%d" % port])
            sport = int(seed.wait_for(r"listening on [0-9.]+:(\d+)", timeout=30).group(1))
            s3 = sockets(sport)
            print("seed --bind 127.0.0.1, port %d: %s" % (sport, s3))
            h.check_eq(s3["tcp"], {"127.0.0.1"}, "seed --bind 127.0.0.1 TCP listener")
            dht_udp = []
            for _ in range(100):  # the DHT starts once the files are looked at: up to 10 s
                dht_udp = sockets_udp_of(seed.pid)
                if dht_udp:
                    break
                time.sleep(0.1)
            h.check(dht_udp and set(dht_udp) == {"127.0.0.1"},
                    "seed --bind 127.0.0.1 --bootstrap: its DHT UDP socket is on 127.0.0.1 (%s)" % dht_udp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sockets_udp_of(pid):
    """Local IPs of the UDP sockets the process holds (its fds matched against /proc/net/udp)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ips = []
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[9] in inodes:
                addr = cols[1].split(":")[0]
                ips.append(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return ips


if __name__ == "__main__":
    h.main(main)
