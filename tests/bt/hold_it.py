"""hold_it.py — a BitTorrent node holds up against held and oversized connections (issue 13,
docs/security.md). Each case is a reproduction of an attack that once worked:

  held      500 connections held open against a seed (half raw, half handshaked and silent),
            spread over 125 source addresses 127.0.1.x (4 each, under the per-address cap):
            a real `shardswarm fetch` still gets the seed and completes; most of the held
            connections were closed by the seed (eviction, deadlines).
  peraddr   40 connections from one address (127.0.0.9) that send nothing: at most 8 stay.
  bigext    4 connections each announce a 64 MiB extension message (before the BEP 10
            handshake, and after it with a non-standard ext id) and stream 4 MiB of it: each
            is closed, and the seed's RSS grows by less than 16 MiB.

Every attacker socket lives in this one process (non-blocking connects; RLIMIT_NOFILE is
raised). The legitimate peer uses 127.0.0.1; the attackers other 127.x addresses (the whole
127.0.0.0/8 is loopback on Linux), so the per-address cap is what it would be on a network.
"""
import errno
import os
import resource
import select
import shutil
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers_bt as hb  # noqa: E402
import harness as h  # noqa: E402


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        h.skip("RLIMIT_NOFILE %d < %d (hard limit): cannot hold that many sockets" % (soft, want))


def connect_from(src, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind((src, 0))
    rc = s.connect_ex(("127.0.0.1", port))
    if rc not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(rc, "connect from %s" % src)
    return s


def wait_connected(socks, timeout=10):
    """Waits until every socket is connected (or failed); returns those that failed."""
    pending, failed = set(socks), []
    end = time.time() + timeout
    while pending and time.time() < end:
        _, w, _ = select.select([], list(pending)[:500], [], 0.5)
        for s in w:
            pending.discard(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                failed.append(s)
    return failed + list(pending)


def closed_by_peer(s):
    """True when the other end closed s (EOF or reset); drains what it sent."""
    try:
        while True:
            d = s.recv(1 << 16)
            if not d:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def count_closed(socks):
    return sum(1 for s in socks if closed_by_peer(s))


def handshake(info_hash, ext=True):
    reserved = bytearray(8)
    if ext:
        reserved[5] |= 0x10  # BEP 10
    return b"\x13BitTorrent protocol" + bytes(reserved) + info_hash + os.urandom(20)


def send_all(s, data, timeout=5):
    end = time.time() + timeout
    view = memoryview(data)
    while view and time.time() < end:
        try:
            n = s.send(view)
            view = view[n:]
        except BlockingIOError:
            select.select([], [s], [], 0.2)
        except OSError:
            return False
    return not view


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Seed:
    def __init__(self, tmp, ps):
        root = os.path.join(tmp, "data")
        os.makedirs(os.path.join(root, "hold"))
        with open(os.path.join(root, "hold", "blob.bin"), "wb") as f:
            f.write(os.urandom(2 << 20))
        tb = hb.make_torrent(root, "hold", ["blob.bin"], piece_length=1 << 18)
        self.torrent = os.path.join(tmp, "hold.torrent")
        with open(self.torrent, "wb") as f:
            f.write(tb)
        self.info_hash = bytes.fromhex(hb.info_hash_of(tb))
        self.proc = ps.start("seed", [h.BIN, "seed", self.torrent, "--dir", os.path.join(root, "hold"), "--bind", "127.0.0.1"] + (["-v"] if os.environ.get("HOLD_V") else []))
        self.port = int(self.proc.wait_for(r"listening on [0-9.]+:(\d+)", timeout=30).group(1))
        self.tmp = tmp
        self.ps = ps

    def fetch(self, name, timeout_s=30):
        out = os.path.join(self.tmp, name)
        t0 = time.time()
        r = h.run([h.BIN, "fetch", self.torrent, "--out", out, "--peer", "127.0.0.1:%d" % self.port,
                   "--timeout", str(timeout_s), "--bind", "127.0.0.1"], timeout=timeout_s + 30)
        return r, time.time() - t0, out


def case_held():
    raise_nofile(1200)
    tmp = h.tmpdir("sw-hold-")
    socks = []
    try:
        with h.Procs() as ps:
            seed = Seed(tmp, ps)
            t0 = time.time()
            for k in range(500):
                socks.append(connect_from("127.0.1.%d" % (2 + k // 4), seed.port))
            failed = wait_connected(socks)
            sent = sum(1 for s in socks[1::2] if s not in failed and send_all(s, handshake(seed.info_hash)))
            print("held: 500 connections (%d failed to connect), %d handshaked, in %.1f s"
                  % (len(failed), sent, time.time() - t0), file=sys.stderr)
            time.sleep(1.0)  # the seed takes them all in
            n_raw, n_hs = count_closed(socks[0::2]), count_closed(socks[1::2])
            print("held: before the fetch the seed had closed %d raw and %d handshaked connections"
                  % (n_raw, n_hs), file=sys.stderr)
            r, dt, out = seed.fetch("fetch-held")
            h.check(r.returncode == 0, "fetch while 500 connections are held: exit %d\n%s%s"
                    % (r.returncode, r.stdout[-1500:], r.stderr[-1500:]))
            got = [os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs if f == "blob.bin"]
            h.check(got == [2 << 20], "fetched blob.bin sizes %r" % got)
            n_closed = count_closed(socks)
            print("held: the fetch completed in %.1f s; the seed closed %d of the 500 held connections"
                  % (dt, n_closed), file=sys.stderr)
            h.check(n_closed >= 500 - 272, "the seed closed only %d of 500 held connections" % n_closed)
            h.check(seed.proc.alive(), "the seed is still running")
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def case_peraddr():
    tmp = h.tmpdir("sw-hold-")
    socks = []
    try:
        with h.Procs() as ps:
            seed = Seed(tmp, ps)
            socks = [connect_from("127.0.0.9", seed.port) for _ in range(40)]
            wait_connected(socks)
            end = time.time() + 5
            open_ = 40
            while time.time() < end:
                open_ = 40 - count_closed(socks)
                if open_ <= 8:
                    break
                time.sleep(0.2)
            print("peraddr: %d of 40 connections from 127.0.0.9 left open" % open_, file=sys.stderr)
            h.check(open_ <= 8, "%d connections from one address held (cap 8)" % open_)
            # the legitimate peer on another address is not affected
            r, dt, _ = seed.fetch("fetch-peraddr")
            h.check(r.returncode == 0, "fetch beside 40 connections of 127.0.0.9: exit %d\n%s"
                    % (r.returncode, r.stderr[-1500:]))
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def ext_msg_header(ext_id, body_len):
    return (body_len + 2).to_bytes(4, "big") + bytes([20, ext_id])


def case_bigext():
    tmp = h.tmpdir("sw-hold-")
    socks = []
    try:
        with h.Procs() as ps:
            seed = Seed(tmp, ps)
            time.sleep(0.5)
            before = rss_kib(seed.proc.pid)
            chunk = os.urandom(1 << 20)
            for k in range(4):
                s = connect_from("127.0.2.%d" % (k + 1), seed.port)
                socks.append(s)
                wait_connected([s])
                msg = handshake(seed.info_hash)
                if k >= 2:  # after a BEP 10 handshake, an id the peer never advertised a use for
                    ext_hs = hb.bencode({"m": {"ut_metadata": 1}})
                    msg += ext_msg_header(0, len(ext_hs)) + ext_hs
                msg += ext_msg_header(0 if k < 2 else 3, (64 << 20) - 2)
                send_all(s, msg)
                streamed = 0
                for _ in range(4):
                    if not send_all(s, chunk, timeout=2):
                        break
                    streamed += len(chunk)
                print("bigext %d: 64 MiB extension message announced, %d MiB of it streamed"
                      % (k, streamed >> 20), file=sys.stderr)
            end = time.time() + 5
            while time.time() < end and count_closed(socks) < len(socks):
                time.sleep(0.2)
            n_closed = sum(1 for s in socks if closed_by_peer(s))
            pid = seed.proc.pid
            after = rss_kib(pid)
            print("bigext: %d of 4 closed; seed RSS %d KiB -> %d KiB" % (n_closed, before, after), file=sys.stderr)
            h.check(n_closed == 4, "only %d of 4 connections with 64 MiB extension messages closed" % n_closed)
            h.check(after - before < 16 << 10, "the seed's RSS grew by %d KiB" % (after - before))
            out = seed.proc.output()
            h.check("before the extension handshake" in out, "the seed's log names the cap:\n%s" % out[-2000:])
    finally:
        for s in socks:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    h.main_cases({"held": case_held, "peraddr": case_peraddr, "bigext": case_bigext})
