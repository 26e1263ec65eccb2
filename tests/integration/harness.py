"""harness.py — shared helpers for integration tests that start real processes on loopback.

Every process is started through Procs, which stops each one by PID when the test ends,
fails, or is interrupted. Every wait is bounded. Ports come from the kernel (bind to 0).
"""
import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77

BIN = os.environ.get("SW_BIN") or os.path.join(os.environ.get("SW_BUILD_DIR", "build"), "shardswarm")
SHARED = os.environ.get("SW_SHARED_DATA", os.path.join(os.path.dirname(__file__), "../../../shared/data"))
SOURCE = os.environ.get("SW_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))


def skip(msg):
    print("SKIP: " + msg, file=sys.stderr)
    sys.exit(SKIP)


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_eq(a, b, what):
    if a != b:
        fail("%s: %r != %r" % (what, a, b))


def shared_model(name="stories260K.gguf"):
    p = os.path.join(SHARED, "models", name)
    if not os.path.exists(p):
        skip("shared test data absent: %s (the tests that need ../shared/data are skipped)" % p)
    return p


def free_port(kind=socket.SOCK_STREAM):
    """A port the kernel just gave us on 127.0.0.1 (TCP and, best effort, UDP free too)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            t = socket.socket(socket.AF_INET, other)
            t.bind(("127.0.0.1", port))
            t.close()
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def tmpdir(prefix="sw-it-"):
    return tempfile.mkdtemp(prefix=prefix)


def npm_install(prefix, pkgs, have, timeout, extra=()):
    """`npm install --prefix PREFIX PKGS` unless the file `have` exists, under a lock on
    PREFIX: the tests that install into <build>/npm run in parallel, and two npm runs on one
    prefix break each other (one of them failed and its test skipped). Returns None when
    `have` was there, else the CompletedProcess; raises subprocess.TimeoutExpired past
    `timeout` seconds, the wait for the lock included."""
    import fcntl
    os.makedirs(prefix, exist_ok=True)
    deadline = time.time() + timeout
    with open(os.path.join(prefix, ".install-lock"), "w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise subprocess.TimeoutExpired("npm install", timeout)
                time.sleep(0.2)
        if os.path.exists(have):
            return None
        return subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--fetch-timeout=20000", "--fetch-retries=1"]
                              + list(extra) + ["--prefix", prefix] + list(pkgs), capture_output=True, text=True,
                              timeout=max(1.0, deadline - time.time()))


def run(args, timeout=60, check_rc=None, **kw):
    """Runs a command to completion (bounded); returns CompletedProcess with text output."""
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc is not None and r.returncode != check_rc:
        fail("%s exited %d (expected %d)\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(map(str, args)), r.returncode, check_rc, r.stdout[-4000:], r.stderr[-4000:]))
    return r


class Proc:
    """A started process whose stdout+stderr go to a log file we can search."""

    def __init__(self, name, args, logdir, env=None, cwd=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = os.path.join(logdir, name + ".log")
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=e, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def wait_for(self, pattern, timeout=30, start=0):
        """Waits until the log matches regex `pattern` (searched from offset `start`)."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.output()
            m = rx.search(out, start)
            if m:
                return m
            if not self.alive():
                out = self.output()
                m = rx.search(out, start)
                if m:
                    return m
                fail("%s exited (%s) before printing /%s/\n--- log tail ---\n%s" % (
                    self.name, self.p.returncode, pattern, out[-3000:]))
            time.sleep(0.05)
        fail("%s: /%s/ not seen within %ss\n--- log tail ---\n%s" % (
            self.name, pattern, timeout, self.output()[-3000:]))

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=5):
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.p.wait(timeout=5)
        self.log.close()
        return self.p.returncode

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.p.wait(timeout=5)


class Procs:
    """Owns every process a test starts; stops all of them by PID on exit, error or signal."""

    def __init__(self, logdir=None):
        self.logdir = logdir or tmpdir("sw-logs-")
        self.procs = []
        atexit.register(self.stop_all)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.stop_all()
        sys.exit(128 + signum)

    def start(self, name, args, env=None, cwd=None):
        p = Proc(name, args, self.logdir, env=env, cwd=cwd)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            try:
                p.stop()
            except Exception:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except Exception:
                    pass

    def dump_logs(self, tail=2000):
        for p in self.procs:
            print("---- %s (%s) ----\n%s" % (p.name, " ".join(p.args), p.output()[-tail:]), file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None:
            self.dump_logs()
        self.stop_all()
        return False


def main_cases(cases):
    """`script.py CASE`: runs cases[CASE] through main(); a usage error (exit 2) names them."""
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        print("usage: %s {%s}" % (os.path.basename(sys.argv[0]), "|".join(sorted(cases))), file=sys.stderr)
        sys.exit(2)
    main(cases[sys.argv[1]])


def main(test_fn):
    """Runs test_fn(); prints PASS or the failure; exits 0/1 (77 from skip())."""
    try:
        test_fn()
    except AssertionError as e:
        print("FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
    print("PASS", file=sys.stderr)
    sys.exit(0)
