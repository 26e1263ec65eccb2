#!/usr/bin/env python3
"""llamacpp_side.py BUILD — shardswarm beside llama.cpp (node-llama-cpp 3.22.1's prebuilt CPU
binary) on the same GGUF files and the same thread count: prompt (prefill) and generation
(decode) tokens/s, runs alternating between the engines, medians, and the ratio.

Models (synth, seed 1, generated once into BUILD/bench-models):
  tinyllama-1.1b in Q4_0 (the anchor), Q2_K, Q3_K, IQ4_XS;
  mixtral-8x7b and qwen3-30b-a3b cut to SW_BENCH_MOE_LAYERS layers (default 2: the full
  models do not fit this class of machine), in SW_BENCH_MOE_TYPE (default Q4_0).
Both engines get the same prompt token ids (3 + i*7919 mod 31000, as bench/nlc_speed.mjs
builds them) and decode greedily past end-of-generation.

The reference is node-llama-cpp installed into BUILD/npm (as tests/infer/test_oracle.py does),
or the node_modules folder SW_NLC_MODULES names; when node/npm or the registry is unreachable
the llama.cpp column is skipped with a message. No reference figure is ever a constant.
Environment: SW_BENCH_RUNS (3), SW_BENCH_THREADS (2), SW_BENCH_PP (128), SW_BENCH_TG (32),
SW_BENCH_CASES (e.g. "tinyllama-1.1b:Q4_0 mixtral-8x7b:Q4_0"), SW_SHARED_DATA.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

NLC = "node-llama-cpp@3.22.1"
NLC_BIN = "@node-llama-cpp/linux-x64@3.22.1"
HERE = os.path.dirname(os.path.abspath(__file__))
RUN_TIMEOUT = 600


def env_int(name, default, lo, hi):
    v = os.environ.get(name, str(default))
    try:
        n = int(v)
    except ValueError:
        sys.exit("%s=%r is not an integer" % (name, v))
    if not lo <= n <= hi:
        sys.exit("%s=%d is outside %d..%d" % (name, n, lo, hi))
    return n


def find_vocab(name):
    for d in (os.environ.get("SW_SHARED_DATA", ""), "../shared/data", "/work/shared/data"):
        p = os.path.join(d, "vocab", name)
        if d and os.path.isfile(p):
            return p
    return None


def nlc_modules(build):
    """The node_modules folder holding node-llama-cpp, or (None, why)."""
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
    print("installing %s into %s ..." % (NLC, prefix), flush=True)
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--fetch-timeout=20000",
                            "--fetch-retries=1", "--omit=optional", "--ignore-scripts", "--prefix", prefix,
                            NLC, NLC_BIN], capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        return None, "npm install %s took over 240 s (registry unreachable?)" % NLC
    if r.returncode != 0 or not have():
        return None, "npm install %s failed (registry unreachable?): %s" % (NLC, r.stderr.strip()[-300:])
    return mods, None


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_ours(shard, model, ids, tg, threads):
    r = subprocess.run([shard, "generate", "-m", model, "--prompt-ids", " ".join(map(str, ids)),
                        "-n", str(tg + 1), "--temp", "0", "--ignore-eos", "--ids", "-t", str(threads),
                        "--json-timings"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    js = last_json(r.stderr)
    if r.returncode != 0 or not js:
        print("  shardswarm generate failed on %s: %s" % (model, r.stderr.strip()[-300:]), flush=True)
        return None
    return js


def run_ref(mods, model, pp, tg, threads):
    r = subprocess.run(["node", os.path.join(HERE, "nlc_speed.mjs"), mods, model, str(threads), str(pp), str(tg)],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    js = last_json(r.stdout)
    if r.returncode != 0 or not js:
        print("  node-llama-cpp failed on %s: %s" % (model, r.stderr.strip()[-300:]), flush=True)
        return None
    return js


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    shard = os.path.join(build, "shardswarm")
    if not os.access(shard, os.X_OK):
        sys.exit("shardswarm not built (%s)" % shard)
    runs = env_int("SW_BENCH_RUNS", 3, 1, 50)
    threads = env_int("SW_BENCH_THREADS", 2, 1, 256)
    pp = env_int("SW_BENCH_PP", 128, 2, 4096)
    tg = env_int("SW_BENCH_TG", 32, 1, 4096)
    moe_layers = env_int("SW_BENCH_MOE_LAYERS", 2, 1, 64)
    moe_type = os.environ.get("SW_BENCH_MOE_TYPE", "Q4_0")
    cases = os.environ.get("SW_BENCH_CASES", "tinyllama-1.1b:Q4_0 tinyllama-1.1b:Q2_K tinyllama-1.1b:Q3_K "
                           "tinyllama-1.1b:IQ4_XS mixtral-8x7b:%s qwen3-30b-a3b:%s" % (moe_type, moe_type)).split()
    vocabs = {"qwen3-30b-a3b": "ggml-vocab-deepseek-llm.gguf"}
    mods, why = nlc_modules(build)
    if not mods:
        print("llama.cpp column skipped: %s" % why, flush=True)
    models = os.path.join(build, "bench-models")
    os.makedirs(models, exist_ok=True)
    ids = [3 + (i * 7919) % 31000 for i in range(pp)]
    load = open("/proc/loadavg").read().split()[:3]
    print("shardswarm vs llama.cpp (node-llama-cpp 3.22.1 prebuilt CPU), %d threads, pp%d / tg%d, "
          "median of %d alternating runs, load %s" % (threads, pp, tg, runs, " ".join(load)), flush=True)
    rows = []
    for case in cases:
        preset, _, typ = case.partition(":")
        if not typ:
            sys.exit("SW_BENCH_CASES entry %r is not PRESET:TYPE" % case)
        moe = preset != "tinyllama-1.1b"
        name = "%s%s-%s" % (preset, "-%dL" % moe_layers if moe else "", typ)
        m = os.path.join(models, name + ".gguf")
        if not os.path.isfile(m):
            vocab = find_vocab(vocabs.get(preset, "ggml-vocab-llama-spm.gguf"))
            if not vocab:
                print("%s: vocabulary not found (set SW_SHARED_DATA); skipped" % name)
                continue
            print("generating %s (once) ..." % m, flush=True)
            cmd = [shard, "synth", "--preset", preset, "--type", typ, "--seed", "1", "--vocab", vocab,
                   "-o", m + ".tmp"] + (["--layers", str(moe_layers)] if moe else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print("%s: synth failed: %s" % (name, r.stderr.strip()[-300:]))
                continue
            os.replace(m + ".tmp", m)
        with open(m, "rb") as fh:  # into the page cache, so that no engine pays the disk
            while fh.read(1 << 24):
                pass
        ours, ref = [], []
        for i in range(runs):
            order = ("ours", "ref") if i % 2 == 0 else ("ref", "ours")
            for eng in order:
                if eng == "ours":
                    js = run_ours(shard, m, ids, tg, threads)
                    if js:
                        ours.append(js)
                elif mods:
                    js = run_ref(mods, m, pp, tg, threads)
                    if js:
                        ref.append(js)
        print("  %s: %d+%d runs" % (name, len(ours), len(ref)), flush=True)
        med = lambda v, k: statistics.median(x[k] for x in v) if v else None
        spread = lambda v, k: (min(x[k] for x in v), max(x[k] for x in v)) if v else None
        rows.append((name, [(med(v, k), spread(v, k)) for k, v in
                            (("prompt_tps", ours), ("prompt_tps", ref), ("gen_tps", ours), ("gen_tps", ref))]))
    f = lambda m: "%.1f" % m[0] if m[0] else "-"
    r = lambda m: "%.1f-%.1f" % m[1] if m[1] else "-"
    q = lambda a, b: "%.2f" % (a[0] / b[0]) if a[0] and b[0] else "-"
    print("%-26s %7s %7s %5s   %7s %7s %5s   %s" % ("model", "pp ours", "llama", "ratio", "tg ours", "llama", "ratio",
                                                "ranges (pp ours, llama; tg ours, llama)"))
    for name, (op, rp, og, rg) in rows:
        print("%-26s %7s %7s %5s   %7s %7s %5s   %s, %s; %s, %s" % (name, f(op), f(rp), q(op, rp), f(og), f(rg), q(og, rg),
                                                                  r(op), r(rp), r(og), r(rg)))
    print("(tok/s; ratio = shardswarm / llama.cpp; load after: %s)" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
