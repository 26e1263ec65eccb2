"""test_bt_swarm.py — shardswarm's BitTorrent engine end to end on loopback:
1. a split of stories260K: `torrent create`, one seeder and two leechers, SHA-256 checked;
2. a 64 MiB synthetic split: seeder + two leechers at once (several pieces and peers);
3. a leecher killed (SIGKILL) mid-download restarts and resumes (no final name before);
4. a peer sending corrupt data is banned and the file is still correct;
5. magnet-only fetch (metadata over BEP 9);
6. bad input: unsafe paths refused by `torrent show`, usage errors exit 2;
7. peers found through the DHT (`dht run` node, seeder and leecher with --bootstrap);
8. a full disk (2 MiB tmpfs, private mount namespace, root only) fails clearly, no final file;
9. PEX: a leecher learns a seeder's address from another leecher (BEP 11) and connects."""
import hashlib
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import btpeer  # noqa: E402
import fakesplit  # noqa: E402


def sha(p):
    d = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            d.update(b)
    return d.hexdigest()


def same_files(a, b, names):
    for n in names:
        h.check(os.path.exists(os.path.join(b, n)), "%s missing in %s" % (n, b))
        h.check_eq(sha(os.path.join(a, n)), sha(os.path.join(b, n)), "SHA-256 of " + n)


def start_seeder(procs, name, torrent, folder):
    p = procs.start(name, [h.BIN, "seed", torrent, "--dir", folder, "--host", "127.0.0.1"])
    m = p.wait_for(r"listening on [0-9.]+:(\d+)", timeout=20)
    return p, int(m.group(1))


def fetch_args(torrent, out, peers, extra=()):
    a = [h.BIN, "fetch", torrent, "--out", out, "--timeout", "120"]
    for port in peers:
        a += ["--peer", "127.0.0.1:%d" % port]
    return a + list(extra)


def test():
    model = h.shared_model()
    work = h.tmpdir("sw-bt-")
    with h.Procs() as procs:
        # ---- 1. real model split: seeder + 2 leechers
        split = os.path.join(work, "split")
        h.run([h.BIN, "split", model, "--shards", "2", "--out", split], timeout=120, check_rc=0)
        r = h.run([h.BIN, "torrent", "create", split], timeout=60, check_rc=0)
        ih = re.search(r"info-hash\): ([0-9a-f]{40})", r.stdout).group(1)
        tor = os.path.join(split, "model.torrent")
        r = h.run([h.BIN, "torrent", "show", tor, "--json"], check_rc=0)
        h.check(('"info_hash":"%s"' % ih) in r.stdout, "show --json prints the info-hash")
        h.check('"pad":true' in r.stdout or r.stdout.count('"path"') == 2, "pad file between shards (or aligned)")
        # the owner key (from `keygen`) lands in the info dict: another info-hash
        key = os.path.join(work, "owner.key")
        pub = h.run([h.BIN, "keygen", "-o", key], check_rc=0).stdout.strip()
        otor = os.path.join(work, "owned.torrent")
        r = h.run([h.BIN, "torrent", "create", split, "--owner-key", key, "-o", otor], timeout=60, check_rc=0)
        h.check(ih not in r.stdout, "the owner key changes the info-hash")
        r = h.run([h.BIN, "torrent", "show", otor, "--json"], check_rc=0)
        h.check(('"owner":"%s"' % pub) in r.stdout, "show --json prints the owner key")
        seed, port = start_seeder(procs, "seed-real", tor, split)
        outs = [os.path.join(work, "real-%d" % i) for i in range(2)]
        ls = [procs.start("leech-real-%d" % i, fetch_args(tor, outs[i], [port])) for i in range(2)]
        for p in ls:
            p.p.wait(timeout=60)
            h.check_eq(p.p.returncode, 0, "fetch exit status (%s)\n%s" % (p.name, p.output()[-2000:]))
        for o in outs:
            same_files(split, o, ["shard-0.gguf", "shard-1.gguf"])
        # a single shard only: --file 1
        one = os.path.join(work, "real-one")
        h.run(fetch_args(tor, one, [port], ["--file", "1"]), timeout=60, check_rc=0)
        same_files(split, one, ["shard-1.gguf"])
        h.check(not os.path.exists(os.path.join(one, "shard-0.gguf")), "--file 1 fetched only shard 1")

        # ---- 5. magnet only (metadata over BEP 9)
        mag = "magnet:?xt=urn:btih:%s&x.pe=127.0.0.1:%d" % (ih, port)
        mdir = os.path.join(work, "magnet")
        r = h.run([h.BIN, "fetch", mag, "--out", mdir, "--timeout", "60"], timeout=90)
        h.check_eq(r.returncode, 0, "magnet fetch exit status\n" + r.stderr[-2000:])
        h.check("metadata received" in r.stderr, "metadata came over BEP 9")
        same_files(split, mdir, ["shard-0.gguf", "shard-1.gguf"])
        seed.stop()

        # ---- 7. peers found on the DHT (src/dht): a DHT node, a seeder announcing, a
        # leecher with only --bootstrap
        dport = h.free_port(__import__("socket").SOCK_DGRAM)
        dht = procs.start("dht", [h.BIN, "dht", "run", "--listen", str(dport), "--bind", "127.0.0.1"])
        time.sleep(0.3)
        if dht.alive():
            boot = "127.0.0.1:%d" % dport
            dseed = procs.start("seed-dht", [h.BIN, "seed", tor, "--dir", split, "--host", "127.0.0.1",
                                             "--bootstrap", boot])
            dseed.wait_for(r"DHT ready", timeout=20)
            ddir = os.path.join(work, "dht")
            r = h.run([h.BIN, "fetch", tor, "--out", ddir, "--bootstrap", boot, "--timeout", "60"], timeout=90)
            h.check_eq(r.returncode, 0, "fetch through the DHT exit status\n" + r.stderr[-2000:])
            same_files(split, ddir, ["shard-0.gguf", "shard-1.gguf"])
            dseed.stop()
            dht.stop()

        # ---- 2. 64 MiB synthetic split, seeder + 2 concurrent leechers
        big = os.path.join(work, "big")
        fakesplit.make(big, [48 << 20, 16 << 20 | 12345], seed=7)
        h.run([h.BIN, "torrent", "create", big], timeout=120, check_rc=0)
        btor = os.path.join(big, "model.torrent")
        seed, port = start_seeder(procs, "seed-big", btor, big)
        outs = [os.path.join(work, "big-%d" % i) for i in range(2)]
        ls = [procs.start("leech-big-%d" % i, fetch_args(btor, outs[i], [port])) for i in range(2)]
        for p in ls:
            p.p.wait(timeout=120)
            h.check_eq(p.p.returncode, 0, "fetch exit status (%s)\n%s" % (p.name, p.output()[-2000:]))
        for o in outs:
            same_files(big, o, ["shard-0.gguf", "shard-1.gguf"])
            h.check(not [f for f in os.listdir(o) if f.endswith(".part")], "no .part left in " + o)

        # ---- 3. kill mid-download, restart, resume
        t = btpeer.Torrent(btor, big)
        slow = btpeer.Seeder(t, "good", rate=8 << 20)  # ~8 MiB/s: 64 MiB takes ~8 s
        kdir = os.path.join(work, "killed")
        p = procs.start("leech-kill", fetch_args(btor, kdir, [slow.port]))
        deadline = time.time() + 60
        part = os.path.join(kdir, "shard-0.gguf.part")
        while time.time() < deadline:
            m = re.findall(r"progress shard-0.gguf ([0-9.]+)%", p.output())
            if m and float(m[-1]) >= 20:
                break
            time.sleep(0.1)
        p.kill9()
        slow.close()
        h.check(os.path.exists(part), "a partial download is kept as .part")
        h.check(not os.path.exists(os.path.join(kdir, "shard-0.gguf")), "no final name before completion")
        p2 = procs.start("leech-resume", fetch_args(btor, kdir, [port]))
        p2.p.wait(timeout=120)
        out = p2.output()
        h.check_eq(p2.p.returncode, 0, "resumed fetch exit status\n" + out[-2000:])
        m = re.search(r"on disk: .* verified \(([0-9.]+)%\)", out)
        h.check(m and float(m.group(1)) > 5, "restart resumed from verified pieces:\n" + out[-1500:])
        same_files(big, kdir, ["shard-0.gguf", "shard-1.gguf"])
        # --verify of a complete folder rehashes and exits 0
        r = h.run(fetch_args(btor, kdir, [port], ["--verify"]), timeout=60, check_rc=0)
        h.check("(100.0%)" in r.stderr, "--verify finds everything verified")

        # ---- 9. PEX (BEP 11): B knows only A; A's peer (a slow Python seeder) reaches B
        # through ut_pex and B connects to it
        slow = btpeer.Seeder(t, "good", rate=4 << 20)
        aport = h.free_port()
        pa = procs.start("pex-a", fetch_args(btor, os.path.join(work, "pex-a"), [slow.port],
                                             ["--listen", str(aport), "--host", "127.0.0.1", "--file", "1"]))
        pa.wait_for(r"listening on", timeout=20)
        pb = procs.start("pex-b", fetch_args(btor, os.path.join(work, "pex-b"), [aport], ["--file", "1", "-v"]))
        pb.p.wait(timeout=120)
        h.check_eq(pb.p.returncode, 0, "PEX leecher exit status\n" + pb.output()[-1500:])
        h.check(("peer 127.0.0.1:%d connected" % slow.port) in pb.output(),
                "B connected to the seeder it learnt through PEX:\n" + pb.output()[-1500:])
        same_files(big, os.path.join(work, "pex-b"), ["shard-1.gguf"])
        pa.p.wait(timeout=60)
        slow.close()

        # ---- 4. a corrupt peer is banned, the result is still correct
        bad = btpeer.Seeder(t, "corrupt")
        cdir = os.path.join(work, "corrupt")
        p = procs.start("leech-corrupt", fetch_args(btor, cdir, [bad.port, port], ["-v"]))
        p.p.wait(timeout=120)
        out = p.output()
        h.check_eq(p.p.returncode, 0, "fetch with a corrupt peer exit status\n" + out[-2000:])
        h.check("banned" in out, "the corrupt peer was banned:\n" + out[-2000:])
        h.check(bad.served > 0, "the corrupt peer was asked for data")
        same_files(big, cdir, ["shard-0.gguf", "shard-1.gguf"])
        bad.close()

        # ---- 8. disk full: a 2 MiB tmpfs in a private mount namespace (root only)
        if h.run(["unshare", "-m", "true"]).returncode == 0:
            fdir = os.path.join(work, "full")
            os.makedirs(fdir, exist_ok=True)
            script = ('mount -t tmpfs -o size=2m none "$1" || exit 77; "$2" fetch "$3" --out "$1" --file 1 '
                      '--peer 127.0.0.1:"$4" --timeout 60; rc=$?; echo "LS:$(ls "$1" | tr "\\n" " ")"; exit $rc')
            r = h.run(["unshare", "-m", "sh", "-c", script, "sh", fdir, h.BIN, btor, str(port)], timeout=90)
            if r.returncode != 77:
                h.check_eq(r.returncode, 1, "fetch into a full disk fails\n" + r.stderr[-1500:])
                h.check("disk full" in r.stderr, "the error says the disk is full: " + r.stderr[-800:])
                listing = r.stdout.split("LS:")[-1].split()
                h.check("shard-1.gguf" not in listing, "no file claims to be complete: %r" % listing)

        # ---- 6. bad input
        r = h.run([h.BIN, "fetch", btor, "--peer", "nonsense"])
        h.check_eq(r.returncode, 2, "bad --peer is a usage error")
        h.check("--peer" in r.stderr, "the message names the flag")
        r = h.run([h.BIN, "fetch", btor, "--timeout", "x"])
        h.check_eq(r.returncode, 2, "bad --timeout is a usage error")
        evil = os.path.join(work, "evil.torrent")
        with open(evil, "wb") as f:
            f.write(b"d4:infod5:filesld6:lengthi10e4:pathl2:..6:passwdeee4:name1:x12:piece lengthi16384e6:pieces20:"
                    + bytes(20) + b"ee")
        r = h.run([h.BIN, "torrent", "show", evil])
        h.check_eq(r.returncode, 1, "a torrent with '..' is refused")
        h.check("unsafe" in r.stderr, "the message says why: " + r.stderr)
        r = h.run([h.BIN, "fetch", evil, "--out", os.path.join(work, "evil")])
        h.check_eq(r.returncode, 1, "fetch refuses it too")
        seed.stop()


if __name__ == "__main__":
    h.main(test)
