"""refllama.py — the reference engine of the benchmarks: llama.cpp.

First choice: llama.cpp's own llama-bench, built natively (plain cmake, CPU only,
GGML_NATIVE=ON, only the llama-bench target) from the llama.cpp source that the npm package
node-llama-cpp 3.22.1 carries as a git bundle (node_modules/node-llama-cpp/llama/
gitRelease.bundle). The bundle is cloned into BUILD/llama.cpp/src and built into
BUILD/llama.cpp/cmake-build, once: a stamp (bundle commit + cmake flags) says when the
build can be reused. Nothing of it is committed.
Fallback, where that cannot be built: node-llama-cpp's prebuilt CPU binary through
bench/nlc_speed.mjs. Neither is a constant: every figure is measured in the same run.

The npm package is installed into BUILD/npm (as tests/infer/test_oracle.py does), or taken
from SW_NLC_MODULES. Environment: SW_BENCH_REF (auto | native | nlc | none; auto: native,
else nlc), SW_LLAMA_BENCH (a llama-bench binary to use as it is), SW_BENCH_JOBS (build jobs,
default: all CPUs).
"""
import json
import os
import shutil
import subprocess

NLC = "node-llama-cpp@3.22.1"
NLC_BIN = "@node-llama-cpp/linux-x64@3.22.1"
HERE = os.path.dirname(os.path.abspath(__file__))
RUN_TIMEOUT = 900
BUILD_TIMEOUT = 3 * 3600
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF",
               "-DLLAMA_BUILD_TOOLS=ON"]


def say(*a):
    print(*a, flush=True)


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def nlc_modules(build):
    """The node_modules folder holding node-llama-cpp 3.22.1, or (None, why)."""
    mods = os.environ.get("SW_NLC_MODULES")
    if mods:
        if os.path.isfile(os.path.join(mods, "node-llama-cpp", "package.json")):
            return mods, None
        return None, "SW_NLC_MODULES=%s holds no node-llama-cpp" % mods
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node/npm not installed"
    prefix = os.path.join(build, "npm")
    mods = os.path.join(prefix, "node_modules")
    have = lambda: (os.path.isfile(os.path.join(mods, "node-llama-cpp", "package.json"))
                    and os.path.isdir(os.path.join(mods, "@node-llama-cpp", "linux-x64")))
    if have():
        return mods, None
    say("installing %s into %s ..." % (NLC, prefix))
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--fetch-timeout=20000",
                            "--fetch-retries=1", "--omit=optional", "--ignore-scripts", "--prefix", prefix,
                            NLC, NLC_BIN], capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        return None, "npm install %s took over 240 s (registry unreachable?)" % NLC
    if r.returncode != 0 or not have():
        return None, "npm install %s failed (registry unreachable?): %s" % (NLC, r.stderr.strip()[-300:])
    return mods, None


def bundle_commit(bundle):
    r = subprocess.run(["git", "bundle", "list-heads", bundle], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.split():
        return None
    return r.stdout.split()[0]


def build_native(build, mods):
    """Path of llama-bench built from the bundle in mods (cached), or (None, why)."""
    if not shutil.which("git") or not shutil.which("cmake") or not shutil.which("c++"):
        return None, "git, cmake or a C++ compiler is missing"
    bundle = os.path.join(mods, "node-llama-cpp", "llama", "gitRelease.bundle")
    if not os.path.isfile(bundle):
        return None, "%s is missing" % bundle
    commit = bundle_commit(bundle)
    if not commit:
        return None, "git bundle list-heads %s failed" % bundle
    root = os.path.abspath(os.path.join(build, "llama.cpp"))
    src, bdir = os.path.join(root, "src"), os.path.join(root, "cmake-build")
    exe = os.path.join(bdir, "bin", "llama-bench")
    stamp_path = os.path.join(root, "stamp")
    stamp = "%s %s\n" % (commit, " ".join(CMAKE_FLAGS))
    try:
        cached = open(stamp_path).read() == stamp
    except OSError:
        cached = False
    if cached and os.access(exe, os.X_OK):
        return exe, None
    os.makedirs(root, exist_ok=True)
    log_path = os.path.join(root, "build.log")
    head = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0 or head.stdout.strip() != commit:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(bdir, ignore_errors=True)
        r = subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", bundle, src],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return None, "git clone %s failed: %s" % (bundle, r.stderr.strip()[-300:])
    jobs = os.environ.get("SW_BENCH_JOBS") or str(os.cpu_count() or 2)
    say("building llama.cpp %s's llama-bench from node-llama-cpp's bundle into %s (once; %s jobs; "
        "about 10-40 min on 2 cores; log: %s) ..." % (commit[:9], bdir, jobs, log_path))
    with open(log_path, "w") as log:
        try:
            for cmd in (["cmake", "-S", src, "-B", bdir] + CMAKE_FLAGS,
                        ["cmake", "--build", bdir, "-j", jobs, "--target", "llama-bench"]):
                log.write("$ %s\n" % " ".join(cmd))
                log.flush()
                r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
                if r.returncode != 0:
                    return None, "%s failed (see %s)" % (" ".join(cmd[:2]), log_path)
        except subprocess.TimeoutExpired:
            return None, "building llama-bench took over %d s (see %s)" % (BUILD_TIMEOUT, log_path)
    if not os.access(exe, os.X_OK):
        return None, "the build made no %s" % exe
    with open(stamp_path, "w") as f:
        f.write(stamp)
    return exe, None


class Ref:
    """One reference engine: kind 'native' (llama-bench) or 'nlc' (node-llama-cpp), or None."""

    def __init__(self, kind, path, label):
        self.kind, self.path, self.label = kind, path, label

    def run(self, model, threads, pp, tg):
        """{"prompt_tps", "gen_tps"} of one fresh process (pp or tg may be 0), or None."""
        if self.kind == "native":
            return run_llama_bench(self.path, model, threads, pp, tg)
        return run_nlc(self.path, model, threads, pp, tg)


def find(build):
    """(Ref or None, message): the reference engine this run uses, building it if need be."""
    want = os.environ.get("SW_BENCH_REF", "auto")
    if want not in ("auto", "native", "nlc", "none"):
        return None, "SW_BENCH_REF=%s is not auto, native, nlc or none" % want
    if want == "none":
        return None, "SW_BENCH_REF=none"
    given = os.environ.get("SW_LLAMA_BENCH")
    if given and want in ("auto", "native"):
        if not os.access(given, os.X_OK):
            return None, "SW_LLAMA_BENCH=%s is not an executable" % given
        return Ref("native", given, "llama.cpp llama-bench %s" % given), None
    mods, why = nlc_modules(build)
    if not mods:
        return None, why
    why_native = None
    if want in ("auto", "native"):
        exe, why_native = build_native(build, mods)
        if exe:
            commit = bundle_commit(os.path.join(mods, "node-llama-cpp", "llama", "gitRelease.bundle")) or "?"
            return Ref("native", exe, "llama.cpp %s (node-llama-cpp 3.22.1's bundle) llama-bench, built "
                       "natively (GGML_NATIVE)" % commit[:9]), None
        if want == "native":
            return None, why_native
        say("native llama-bench unavailable (%s): falling back to node-llama-cpp's prebuilt binary" % why_native)
    if not shutil.which("node"):
        return None, "node not installed"
    return Ref("nlc", mods, "llama.cpp through node-llama-cpp 3.22.1's prebuilt CPU binary"), None


def run_llama_bench(exe, model, threads, pp, tg):
    """Prefill of pp tokens and decode of tg tokens, one llama-bench process ("-p PP -n TG":
    two tests, both from an empty context), one repetition and no warm-up pass: a fresh
    process, as each shardswarm run is."""
    cmd = [exe, "-m", model, "-t", str(threads), "-r", "1", "--no-warmup", "-o", "jsonl",
           "-p", str(pp), "-n", str(tg)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        say("  llama-bench on %s took over %d s" % (model, RUN_TIMEOUT))
        return None
    out = {}
    for line in r.stdout.splitlines():
        if not line.startswith("{"):
            continue
        try:
            js = json.loads(line)
        except ValueError:
            continue
        if js.get("n_prompt") and not js.get("n_gen"):
            out["prompt_tps"] = float(js["avg_ts"])
        elif js.get("n_gen") and not js.get("n_prompt"):
            out["gen_tps"] = float(js["avg_ts"])
    if r.returncode != 0 or (pp and "prompt_tps" not in out) or (tg and "gen_tps" not in out):
        say("  llama-bench failed on %s: %s" % (model, r.stderr.strip()[-300:]))
        return None
    return out


def run_nlc(mods, model, threads, pp, tg):
    """node-llama-cpp through bench/nlc_speed.mjs (it always evaluates a prompt)."""
    try:
        r = subprocess.run(["node", os.path.join(HERE, "nlc_speed.mjs"), mods, model, str(threads),
                            str(max(pp, 2)), str(max(tg, 1))], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        say("  node-llama-cpp on %s took over %d s" % (model, RUN_TIMEOUT))
        return None
    js = last_json(r.stdout)
    if r.returncode != 0 or not js:
        say("  node-llama-cpp failed on %s: %s" % (model, r.stderr.strip()[-300:]))
        return None
    return js
