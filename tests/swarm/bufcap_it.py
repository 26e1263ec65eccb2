#!/usr/bin/env python3
"""bufcap_it.py CASE — what a node spends on incoming messages is bounded per node, not only
per connection (issue 13 item 2, docs/security.md "Message buffers").

A 2-node swarm of stories260K (n0: shard 0, n1: shard 1). 16 attacker connections from
127.0.3.x complete the BitTorrent handshake and a BEP 10 handshake that names our extension
(`sw_swarm`), then each announces a maximal extension message (64 MiB) and streams it: 8 at
full speed, 8 slowly (16 KiB every 0.25 s). Meanwhile a legitimate client generates through
n1 (`generate --swarm`). n1's RSS (/proc/PID/status VmRSS) is sampled every 0.1 s.

  strangers  the node as it runs: the attackers never proved a node id and have no session
             open at n1, so every message is refused at its length prefix (the cap for
             them is 1 MiB) and each connection closed with a log line naming it; RSS stays
             under baseline + 24 MiB. (On the code before, a peer naming the extension
             could make the node buffer 64 MiB per connection.)
  budget     the node-wide budget alone: n1 runs with SW_TEST_MSG_CAP (every peer speaking
             the extension may send 64 MiB, as before the per-peer caps) and --msg-budget 64:
             RSS stays under baseline + 64 MiB + 40 MiB; each connection either delivers its
             message or is closed (waited 30 s for room, or too slow for the room it holds).

In both cases the client gets its tokens and n1 is alive at the end. `SW_BIN=old/shardswarm`
runs the same attack against another build (the RSS check then reports what it saw).
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402
import pipeline_it as P  # noqa: E402

N_CONN = 16
MSG = 64 << 20          # the extension message each attacker announces (body incl. ext id)
SLOW_CHUNK = 16 << 10
SLOW_EVERY = 0.25
ATTACK_S = 45           # how long an attacker keeps streaming at most


def bencode(x):
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, str):
        return bencode(x.encode())
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(x[k]) for k in sorted(x)) + b"e"
    raise TypeError(x)


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Attacker(threading.Thread):
    def __init__(self, k, port, info_hash, slow):
        super().__init__(daemon=True)
        self.k, self.port, self.ih, self.slow = k, port, info_hash, slow
        self.sent = 0
        self.closed_by_node = False
        self.err = None
        self.stop = False

    def run(self):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.3.%d" % (1 + self.k // 2), 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", self.port))
            self.addr = "%s:%d" % s.getsockname()
            reserved = bytearray(8)
            reserved[5] |= 0x10  # BEP 10
            hs = b"\x13BitTorrent protocol" + bytes(reserved) + self.ih + b"-XX0001-" + os.urandom(12)
            ext = bencode({"m": {"sw_swarm": 3, "ut_metadata": 2}, "v": "bufcap attacker"})
            hs += (len(ext) + 2).to_bytes(4, "big") + bytes([20, 0]) + ext
            # the node's id for our extension is 3 (its handshake's m); the message: kind 'Z'
            # (no such kind: dropped if it is ever delivered whole), then zeros
            hs += (MSG + 1).to_bytes(4, "big") + bytes([20, 3]) + b"Z"
            try:
                s.sendall(hs)
            except OSError:
                self.closed_by_node = True  # refused at the length prefix, before we were done
                s.close()
                return
            left = MSG - 2
            chunk = bytes(SLOW_CHUNK if self.slow else 1 << 20)
            end = time.time() + ATTACK_S
            s.settimeout(0.5)
            while left > 0 and time.time() < end and not self.stop:
                view = memoryview(chunk)[:min(len(chunk), left)]
                try:
                    n = s.send(view)
                except socket.timeout:
                    continue  # the node is not reading us (backpressure)
                except OSError:
                    self.closed_by_node = True
                    break
                left -= n
                self.sent += n
                if self.slow:
                    time.sleep(SLOW_EVERY)
            if not self.closed_by_node:
                # closed by the node? (EOF or reset; the node sends its handshake first)
                s.settimeout(0.2)
                try:
                    while True:
                        d = s.recv(1 << 16)
                        if not d:
                            self.closed_by_node = True
                            break
                except socket.timeout:
                    pass
                except OSError:
                    self.closed_by_node = True
            s.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.err = repr(e)


def run_attack(case):
    S.node_supported()
    budget_mib = 64
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-bufcap-"), 2, source=harness.shared_model())
        n0 = P.start_node(procs, m, "n0", 0)
        extra = []
        env_before = os.environ.get("SW_TEST_MSG_CAP")
        if case == "budget":
            extra = ["--msg-budget", str(budget_mib)]
            os.environ["SW_TEST_MSG_CAP"] = str(MSG)
        try:
            n1 = P.start_node(procs, m, "n1", 1, n0.port, extra, api=True)
        finally:
            if env_before is None:
                os.environ.pop("SW_TEST_MSG_CAP", None)
            else:
                os.environ["SW_TEST_MSG_CAP"] = env_before
        for n in (n0, n1):
            n.proc.wait_for(r"shard \d+ loaded", timeout=60)
        time.sleep(1.0)
        pid = n1.proc.p.pid
        base = rss_kib(pid)
        ih = bytes.fromhex(m.info_hash)
        atk = [Attacker(k, n1.port, ih, slow=(k % 2 == 1)) for k in range(N_CONN)]
        t0 = time.time()
        for a in atk:
            a.start()
        peak = base
        c = None
        while any(a.is_alive() for a in atk) and time.time() - t0 < ATTACK_S + 20:
            peak = max(peak, rss_kib(pid))
            if c is None and time.time() - t0 > 1.0:
                # the legitimate client, while the attack runs
                c = P.client(procs, m, n0.port, "client", P.PROMPT, 40)
            time.sleep(0.1)
        for a in atk:
            a.stop = True
            a.join(5)
        if c is None:
            c = P.client(procs, m, n0.port, "client", P.PROMPT, 40)
        rc = P.wait_exit(c, 120)
        peak = max(peak, rss_kib(pid))
        out = n1.proc.output()
        n_closed = sum(1 for a in atk if a.closed_by_node)
        sent = sum(a.sent for a in atk)
        print("%s: n1 RSS %d KiB before, peak %d KiB (+%d KiB) during 16 connections x 64 MiB extension messages; "
              "%d of 16 closed by the node; %d MiB streamed in %.1f s" %
              (case, base, peak, peak - base, n_closed, sent >> 20, time.time() - t0), file=sys.stderr)
        for a in atk:
            check(a.err is None, "attacker %d: %s" % (a.k, a.err))
        check(n1.proc.alive(), "n1 is running after the attack:\n%s" % out[-2000:])
        check(rc == 0, "the client failed during the attack (rc %s):\n%s" % (rc, c.output()[-2000:]))
        got = P.client_ids(c)
        check(len(got) == 40, "the client got %d of 40 tokens:\n%s" % (len(got), c.output()[-2000:]))
        if case == "strangers":
            check(peak - base < 24 << 10, "n1's RSS grew by %d KiB (bound 24 MiB)" % (peak - base))
            check(n_closed == N_CONN, "only %d of %d attacker connections were closed" % (n_closed, N_CONN))
            named = [a for a in atk if ("closing %s: extended message (ext id 3) of %d bytes exceeds its cap of 1048576 bytes"
                                        % (a.addr, MSG)) in out]
            check(len(named) == N_CONN, "the log names %d of %d refused peers:\n%s" % (len(named), N_CONN, out[-3000:]))
        else:
            bound = (budget_mib << 10) + (40 << 10)
            check(peak - base < bound, "n1's RSS grew by %d KiB (bound %d KiB: the 64 MiB budget + 40 MiB)"
                  % (peak - base, bound))
            slow = [a for a in atk if a.slow]
            check(all(a.closed_by_node for a in slow), "slow senders closed: %d of %d"
                  % (sum(1 for a in slow if a.closed_by_node), len(slow)))
            check("message buffer" in out or "buffer room" in out, "the log says why:\n%s" % out[-3000:])
            # /swarm/status and /metrics report the budget
            time.sleep(1.5)
            bt = (S.Node(n1.proc, n1.port, n1.api, None).status() or {}).get("bt", {})
            print("budget: /swarm/status bt %s" % {k: v for k, v in bt.items() if k.startswith("msg_")}, file=sys.stderr)
            check(bt.get("msg_budget_bytes") == budget_mib << 20, "status msg_budget_bytes %r" % bt.get("msg_budget_bytes"))
            check(0 < bt.get("msg_buffered_peak_bytes", 0) <= budget_mib << 20, "status peak %r" % bt)
            check(bt.get("msg_closed", 0) >= len(slow) and bt.get("msg_waits", 0) >= 1, "status counters %r" % bt)


def case_honest():
    """Hidden states of a long prompt still pass: a synthetic tinyllama-1.1b shape (n_embd
    2048, 2 layers) split in 2, a 300-token prompt sent whole (--chunk 0, f32): stage 0 sends
    its rows in HIDDEN messages of 256 tokens, 256 x 2048 x 4 = 2 MiB each, over the 1 MiB
    floor, so n1 takes them only because the session open there allows them; both nodes
    run with --msg-budget 4. The tokens equal single-process generation."""
    S.node_supported()
    n_prompt, n_gen = 300, 8
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-bufcap-h-"), 2, synth=["--preset", "tinyllama-1.1b", "--layers", "2", "--type", "Q4_0"])
        extra = ["--msg-budget", "4"]
        n0 = P.start_node(procs, m, "n0", 0, extra=extra)
        n1 = P.start_node(procs, m, "n1", 1, n0.port, extra)
        for n in (n0, n1):
            n.proc.wait_for(r"shard \d+ loaded", timeout=60)
        src = os.path.join(m.root, "synth.gguf")
        r = harness.run([harness.BIN, "generate", "-m", src, "--prompt-len", str(n_prompt), "-n", str(n_gen), "--temp", "0",
                         "--ids", "--ignore-eos", "-t", "1"], timeout=170, check_rc=0)
        ref = r.stdout.split()
        args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % n0.port, "--model", m.torrent,
                "--prompt-len", str(n_prompt), "-n", str(n_gen), "--temp", "0", "--ids", "--ignore-eos", "--wait", "60",
                "--chunk", "0", "--wire", "f32"]
        c = procs.start("client", args)
        rc = P.wait_exit(c, 170)
        out = n0.proc.output() + n1.proc.output()
        check(rc == 0, "client failed (rc %s):\n%s\n%s" % (rc, c.output()[-2000:], out[-2000:]))
        check("exceeds" not in out and "buffer" not in out, "a node refused or held honest traffic:\n%s" % out[-3000:])
        check(P.client_ids(c) == ref, "tokens differ:\n ref %s\n got %s" % (ref, P.client_ids(c)))
        print("honest: a %d-token prompt went through (hidden states in 2 MiB messages); %d tokens equal "
              "single-process" % (n_prompt, n_gen), file=sys.stderr)


if __name__ == "__main__":
    harness.main_cases({"strangers": lambda: run_attack("strangers"), "budget": lambda: run_attack("budget"),
                        "honest": case_honest})
