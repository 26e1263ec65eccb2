"""test_progress_bars.py — the terminal progress bars redraw at most ~10 times a second.

`split` of a 79 MB model (synth preset tiny, F32) writes a 304-piece torrent; its hashing bar
used to redraw once per piece. Here `synth`, `split` and `torrent create` run on a
pseudo-terminal (the bars draw only on a terminal), and every bar's redraws are counted:
at most 10 per second of the command's run, plus its first and last line."""
import os
import pty
import re
import select
import shutil
import subprocess
import time

import harness as h

MAX_PER_S = 10


def run_on_pty(args, timeout=120):
    """Runs args with stdout and stderr on a pty; returns (rc, output bytes, seconds)."""
    master, slave = pty.openpty()
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = bytearray()
    try:
        while True:
            if time.monotonic() - t0 > timeout:
                h.fail("%s: no end after %d s" % (args[1], timeout))
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk and p.poll() is not None:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        rc = p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return rc, bytes(out), time.monotonic() - t0


def check_bars(what, out, seconds, labels):
    text = out.decode("utf-8", "replace")
    for label in labels:
        draws = len(re.findall(r"\r%s \[" % re.escape(label), text))
        limit = int(seconds * MAX_PER_S) + 2
        print("%s: bar '%s' drawn %d times in %.2f s (limit %d), %d bytes of output in all"
              % (what, label, draws, seconds, limit, len(out)))
        h.check(draws >= 1, "%s: the '%s' bar was never drawn on a terminal:\n%s" % (what, label, text[-2000:]))
        h.check(draws <= limit, "%s: the '%s' bar was drawn %d times in %.2f s (at most %d)"
                % (what, label, draws, seconds, limit))
        h.check(re.search(r"\r%s \[#{30}\] 100\.0%%" % re.escape(label), text),
                "%s: the '%s' bar never showed 100%%" % (what, label))
    # each line is ~80 bytes: the redraw limit bounds the output, whatever the piece count
    bound = (int(seconds * MAX_PER_S) + 2) * len(labels) * 100 + 4096
    h.check(len(out) <= bound, "%s: %d bytes of terminal output (at most %d)" % (what, len(out), bound))


def main():
    tmp = h.tmpdir("sw-bars-")
    try:
        model = os.path.join(tmp, "tiny.gguf")
        rc, out, s = run_on_pty([h.BIN, "synth", "--preset", "tiny", "--type", "F32", "-o", model, "-t", "1"])
        h.check_eq(rc, 0, "synth exit status (output: %r)" % out[-500:])
        check_bars("synth", out, s, ["synth"])

        split = os.path.join(tmp, "split")
        rc, out, s = run_on_pty([h.BIN, "split", model, "--shards", "2", "--out", split])
        h.check_eq(rc, 0, "split exit status (output: %r)" % out[-500:])
        m = re.search(rb"pieces: (\d+) x", out)
        h.check(m and int(m.group(1)) >= 300, "split: a torrent of >= 300 pieces (output: %r)" % out[-500:])
        check_bars("split", out, s, ["split", "hashing"])

        # torrent create alone, with the smallest pieces: 4,800 of them
        rc, out, s = run_on_pty([h.BIN, "torrent", "create", split, "--piece-size", "16384",
                                 "-o", os.path.join(tmp, "small.torrent")])
        h.check_eq(rc, 0, "torrent create exit status (output: %r)" % out[-500:])
        check_bars("torrent create", out, s, ["hashing"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    h.main(main)
