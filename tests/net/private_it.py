#!/usr/bin/env python3
"""private_it.py — a private swarm (issue 13 item 1; docs/protocol.md) of real node processes
on 127.0.0.1, with stories260K split in 2 shards:

  - n0 seeds both shards; n1 and n2 start with NO shard and fetch theirs from the swarm over
    encrypted links, then load them; `generate --swarm --swarm-key` gives the same tokens as
    single-process `generate`;
  - a node without the key and one with another key are refused at their first message: they
    never get a peer, a piece or a record; a light client without the key finds no route;
  - an independent Python implementation of the handshake (tests/net/noise_ref.py, from the
    Noise spec) gets message 2 and a sealed BitTorrent handshake back, under AES-256-GCM when it
    offers it and the node's CPU has AES-NI + PCLMULQDQ, under ChaCha20-Poly1305 when it offers
    only that or when the node runs with SW_NOISE_AEAD=chacha (a node without AES); with a wrong
    key, or a plain BitTorrent handshake, it is refused with nothing sent back; a record with
    one byte flipped kills its connection;
  - n2 runs with SW_NOISE_AEAD=chacha: it fetches its shard from n0 and serves its part of the
    pipeline over ChaCha20-Poly1305 links while n0 and n1 could use AES-256-GCM;
  - a plain (unsealed) DHT ping to a member gets no answer; `diagnose --swarm-key` pings it
    sealed and gets one.
"""
import os
import re
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "swarm"))
sys.path.insert(0, HERE)
import noise_ref  # noqa: E402
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

N_GEN = 40


def node(procs, m, name, key, shards=(), extra=(), boot=None, env=None):
    cache = m.cache(name, shards)
    args = [harness.BIN, "node", "--model", m.torrent, "--cache", cache, "--listen", "0", "--threads", "1",
            "--status-interval", "1000"] + list(extra)
    if key:
        args += ["--swarm-key", key]
    if boot:
        args += ["--bootstrap", "127.0.0.1:%d" % boot]
    p = procs.start(name, args, env=env)
    port = int(p.wait_for(r"listening on port (\d+)", timeout=30).group(1))
    return p, port, cache


def bt_handshake(info_hash_hex):
    return b"\x13BitTorrent protocol" + b"\x00" * 5 + b"\x10\x00\x05" + bytes.fromhex(info_hash_hex) + b"-PY0001-" + b"x" * 12


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def closed_without_a_byte(s, what):
    """The node closes the connection and sends nothing at all."""
    try:
        got = s.recv(4096)
    except ConnectionResetError:
        got = b""
    except socket.timeout:
        check(False, "%s: the node kept the connection open 5 s" % what)
    check(got == b"", "%s: the node sent %d bytes (%r...)" % (what, len(got), got[:16]))
    s.close()


def node_takes_aes():
    """What a node started with this environment chooses (src/net/noise.c: sw_noise_aeads_local):
    SW_NOISE_AEAD=chacha|aesgcm forces, otherwise AES-NI and PCLMULQDQ (x86) or AES and PMULL
    (Arm) decide."""
    force = os.environ.get("SW_NOISE_AEAD")
    if force in ("chacha", "aesgcm"):
        return force == "aesgcm"
    try:
        flags = set()
        for line in open("/proc/cpuinfo"):
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
        return ("aes" in flags and "pclmulqdq" in flags) or ("aes" in flags and "pmull" in flags)
    except OSError:
        return False


def sealed_session(m, port, key, offer, want_aead, what):
    """A handshake offering `offer`: the node must choose want_aead, then send its BitTorrent
    handshake sealed under it. Returns the open socket and the Python side's state."""
    s = connect(port)
    nz = noise_ref.Initiator(key, offer)
    s.sendall(nz.msg1())
    (n,) = struct.unpack(">H", noise_ref.read_exact(s, 2))
    check(n == 49, "%s: message 2 length %d" % (what, n))
    nz.read_msg2(noise_ref.read_exact(s, 49))  # raises if it does not authenticate
    check(nz.aead == want_aead, "%s: the node chose AEAD 0x%02x, expected 0x%02x" % (what, nz.aead, want_aead))
    s.sendall(nz.seal(bt_handshake(m.info_hash)))
    first = noise_ref.read_record(s, nz)
    check(first.startswith(b"\x13BitTorrent protocol") and first[28:48] == bytes.fromhex(m.info_hash),
          "%s: the node's first record is not its BitTorrent handshake: %r" % (what, first[:48]))
    return s, nz


def python_peer_checks(m, port, key_hex, wrong_hex, port_chacha):
    key, wrong = bytes.fromhex(key_hex), bytes.fromhex(wrong_hex)
    both, chacha = noise_ref.CHACHAPOLY | noise_ref.AESGCM_ID, noise_ref.CHACHAPOLY
    # 1. a plain BitTorrent handshake: refused at its first message, nothing sent back
    s = connect(port)
    s.sendall(bt_handshake(m.info_hash))
    closed_without_a_byte(s, "plain BitTorrent handshake")
    # 2. the AEAD each side can run: AES-256-GCM only when both offer it
    for p, offer, want, what in ((port, chacha, chacha, "a ChaCha-only peer"),
                                 (port_chacha, both, chacha, "a node with SW_NOISE_AEAD=chacha")):
        sealed_session(m, p, key, offer, want, what)[0].close()
    # 3. the right key, both AEADs offered: message 2, then the node's BitTorrent handshake sealed
    s, nz = sealed_session(m, port, key, both, noise_ref.AESGCM_ID if node_takes_aes() else chacha, "an AES-capable peer")
    # 4. one flipped ciphertext byte: the connection dies
    rec = bytearray(nz.seal(b"\x00\x00\x00\x01\x02"))  # an INTERESTED message
    rec[5] ^= 0x01
    s.sendall(bytes(rec))
    deadline = time.time() + 5
    dead = False
    while time.time() < deadline and not dead:
        try:
            dead = s.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            dead = True
        except socket.timeout:
            break
    check(dead, "a tampered record did not close the connection")
    s.close()
    # 5. a wrong key: refused at message 1, not one byte back (no message 2)
    s = connect(port)
    s.sendall(noise_ref.Initiator(wrong).msg1())
    closed_without_a_byte(s, "wrong swarm key")


def dht_plain_ping_unanswered(port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1.0)
    u.sendto(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", ("127.0.0.1", port))
    try:
        data, _ = u.recvfrom(2048)
        check(False, "a plain DHT ping to a private node was answered: %r" % data[:40])
    except socket.timeout:
        pass
    u.close()


def rekey_vectors():
    """noise_ref's REKEY (Noise §4.2) gives the vectors test_noise.c checks OpenSSL against."""
    k = bytes(range(1, 33))
    want = {noise_ref.CHACHAPOLY: "7f637be6f9d22510eccc1e8a598740cec00b4bb7657d85fe79833cfa50d09601",
            noise_ref.AESGCM_ID: "62b7c53c2a1c55ceb53e6eb8d3676316efccdad2200a8581255262aa8b29ad39"}
    for aead, hexkey in want.items():
        c = noise_ref.Cipher(k, aead, True)
        c.n = noise_ref.REKEY_RECORDS
        c._next()
        check(c.key.hex() == hexkey, "REKEY vector for AEAD 0x%02x: %s" % (aead, c.key.hex()))


def main():
    S.node_supported()
    if not noise_ref.HAVE:
        harness.skip("python3 'cryptography' package missing (noise_ref.py needs it)")
    rekey_vectors()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-priv-"), 2, source=harness.shared_model())
        key, wrong = os.path.join(m.root, "swarm.key"), os.path.join(m.root, "other.key")
        harness.run([harness.BIN, "keygen", "--swarm", "-o", key], check_rc=0)
        harness.run([harness.BIN, "keygen", "--swarm", "-o", wrong], check_rc=0)
        check(oct(os.stat(key).st_mode & 0o777) == "0o600", "key file mode %o" % (os.stat(key).st_mode & 0o777))
        key_hex, wrong_hex = open(key).read().strip(), open(wrong).read().strip()

        n0, port0, _ = node(procs, m, "n0", key, shards=(0, 1), extra=["--seed-all"])
        t0 = time.time()
        n1, _, c1 = node(procs, m, "n1", key, extra=["--shard", "1"], boot=port0)
        n2, port2, c2 = node(procs, m, "n2", key, extra=["--shard", "0"], boot=port0, env={"SW_NOISE_AEAD": "chacha"})
        for p, k in ((n1, 1), (n2, 0)):
            p.wait_for(r"shard %d loaded" % k, timeout=60)
        for c, k in ((c1, 1), (c2, 0)):
            got = open(os.path.join(c, "shards", "shard-%d.gguf" % k), "rb").read()
            check(got == open(m.shard_path(k), "rb").read(), "shard %d fetched over the private swarm differs" % k)
        print("private: 2 nodes fetched their shards from the seeder over sealed links in %.1fs" % (time.time() - t0),
              file=sys.stderr)

        # outsiders: no key, another key
        o1, _, oc1 = node(procs, m, "nokey", None, extra=["--shard", "1"], boot=port0)
        o2, _, oc2 = node(procs, m, "wrongkey", wrong, extra=["--shard", "1"], boot=port0)

        ref = P.reference(P.PROMPT, N_GEN)
        c = P.client(procs, m, port0, "client", P.PROMPT, N_GEN, ["--swarm-key", key])
        rc = P.wait_exit(c)
        check(rc == 0, "private client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = P.client_ids(c)
        check(got == ref, "private swarm tokens differ from single-process generate:\n ref %s\n got %s" % (ref, got))
        print("private: %d tokens equal single-process generate" % N_GEN, file=sys.stderr)

        python_peer_checks(m, port0, key_hex, wrong_hex, port2)
        dht_plain_ping_unanswered(port0)
        # diagnose: its DHT ping is answered when sealed with the key, not otherwise
        for k, want in ((key, "answered a DHT ping"), (None, "only with --swarm-key")):
            args = [harness.BIN, "diagnose", "--model", m.torrent, "--cache", c1, "--bootstrap", "127.0.0.1:%d" % port0]
            r = harness.run(args + (["--swarm-key", k] if k else []), timeout=30)
            check(want in r.stdout + r.stderr, "diagnose %s: no '%s' in:\n%s" % ("with the key" if k else "without a key",
                                                                            want, (r.stdout + r.stderr)[-1500:]))

        # a light client without the key finds no route (it cannot even connect)
        bad = P.client(procs, m, port0, "client-nokey", P.PROMPT, 4, ["--wait", "2"])
        rc = P.wait_exit(bad, timeout=30)
        check(rc != 0, "a client without the key generated:\n%s" % bad.output()[-2000:])

        # the outsiders got nothing: no shard bytes, no swarm peer, refused in n0's log
        for p, oc, what in ((o1, oc1, "no key"), (o2, oc2, "wrong key")):
            shards = os.path.join(oc, "shards")
            sizes = {f: os.path.getsize(os.path.join(shards, f)) for f in os.listdir(shards)}
            check(not any(f.endswith(".gguf") for f in sizes), "%s: a shard file appeared: %s" % (what, sizes))
            check(not re.search(r"shard \d+ loaded", p.output()), "%s: loaded a shard" % what)
            check(p.alive(), "%s: the node died:\n%s" % (what, p.output()[-2000:]))
        log0 = n0.output()
        check(re.search(r"not a private-swarm handshake", log0) is not None, "n0 did not log the plain peer's refusal")
        check(re.search(r"does not hold this swarm's key", log0) is not None, "n0 did not log the wrong key's refusal")
        check(re.search(r"does not hold this swarm's key|not a private-swarm handshake", o2.output()) is not None,
              "the wrong-key node does not say why it was refused:\n%s" % o2.output()[-2000:])
        print("private: outsiders refused at their first message; tamper, plain DHT ping checked", file=sys.stderr)


if __name__ == "__main__":
    harness.main(main)
