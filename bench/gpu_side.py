#!/usr/bin/env python3
"""gpu_side.py BUILD — shardswarm's Vulkan backend beside llama.cpp's (node-llama-cpp 3.22.1's
prebuilt Vulkan binary, @node-llama-cpp/linux-x64-vulkan) on the same GGUF files, every layer
on the GPU: prompt (prefill) and generation (decode) tokens/s, runs alternating between the
engines, medians, the ratio, and the fraction of the card's memory bandwidth our decode
reaches (bytes read per token = the weights uploaded to the device, which every decode
token reads once; KV reads are left out, small at these prompt lengths).

Models (synth, seed 1, generated once into SW_BENCH_MODELS, default BUILD/bench-models):
  tinyllama-1.1b in Q4_0, Q4_K_M, Q8_0, F16, and llama2-7b in Q4_0 (3.8 GB).
Environment:
  SW_BENCH_GPU      the device for shardswarm's --gpu (default auto: the first real GPU;
                    "0" takes device 0, e.g. lavapipe when no GPU is installed)
  SW_BENCH_CASES    e.g. "tinyllama-1.1b:Q4_0 llama2-7b:Q4_0"; PRESET:TYPE[:LAYERS]
  SW_BENCH_RUNS (3), SW_BENCH_PP (128), SW_BENCH_TG (64), SW_SHARED_DATA (vocabularies)
  SW_GPU_BW_GBS     the card's peak memory bandwidth in GB/s (else from the table below by
                    the device's name, else the fraction is not printed)
  SW_NLC_MODULES    a node_modules folder with node-llama-cpp + the Vulkan binary (else
                    installed into BUILD/npm; the llama.cpp column is skipped with a message
                    when npm is unreachable)
Nothing here is a constant figure: every number is measured by this run.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

NLC = "node-llama-cpp@3.22.1"
NLC_BIN = "@node-llama-cpp/linux-x64-vulkan@3.22.1"
HERE = os.path.dirname(os.path.abspath(__file__))
RUN_TIMEOUT = 1800
# Peak memory bandwidth (GB/s) of common cards, by a substring of the Vulkan device name.
BANDWIDTH = [("H200", 4800), ("H100 PCIe", 2000), ("H100", 3350), ("A100-SXM4-80GB", 2039), ("A100", 1555),
             ("L40S", 864), ("L4", 300), ("RTX 4090", 1008), ("RTX 3090", 936), ("A10", 600), ("T4", 320),
             ("RX 7900 XTX", 960), ("MI300X", 5300), ("MI250", 3277)]


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
    mods = os.environ.get("SW_NLC_MODULES")
    have = lambda m: (os.path.isfile(os.path.join(m, "node-llama-cpp", "package.json"))
                      and os.path.isdir(os.path.join(m, "@node-llama-cpp", "linux-x64-vulkan")))
    if mods:
        return (mods, None) if have(mods) else (None, "SW_NLC_MODULES=%s lacks node-llama-cpp's Vulkan binary" % mods)
    if not shutil.which("node") or not shutil.which("npm"):
        return None, "node/npm not installed"
    prefix = os.path.join(build, "npm")
    mods = os.path.join(prefix, "node_modules")
    if have(mods):
        return mods, None
    print("installing %s and %s into %s ..." % (NLC, NLC_BIN, prefix), flush=True)
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--fetch-timeout=20000", "--fetch-retries=1",
                            "--omit=optional", "--ignore-scripts", "--prefix", prefix, NLC, NLC_BIN],
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "npm install took over 300 s (registry unreachable?)"
    if r.returncode != 0 or not have(mods):
        return None, "npm install failed (registry unreachable?): %s" % r.stderr.strip()[-300:]
    return mods, None


def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def run_ours(shard, model, ids, tg, gpu):
    r = subprocess.run([shard, "generate", "-m", model, "--prompt-ids", " ".join(map(str, ids)), "-n", str(tg + 1),
                        "--temp", "0", "--ignore-eos", "--ids", "--gpu", gpu, "--json-timings"],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    js = last_json(r.stderr)
    if r.returncode != 0 or not js:
        print("  shardswarm generate failed on %s: %s" % (model, r.stderr.strip()[-300:]), flush=True)
        return None
    if js.get("backend") != "vulkan":
        print("  shardswarm put no layer on a GPU for %s: %s" % (model, r.stderr.strip()[-400:]), flush=True)
        return None
    return js


def run_ref(mods, model, pp, tg):
    r = subprocess.run(["node", os.path.join(HERE, "nlc_vulkan.mjs"), mods, model, str(pp), str(tg)],
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    js = last_json(r.stdout)
    if r.returncode != 0 or not js:
        print("  node-llama-cpp (Vulkan) failed on %s: %s" % (model, r.stderr.strip()[-300:]), flush=True)
        return None
    return js


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    shard = os.path.join(build, "shardswarm")
    if not os.access(shard, os.X_OK):
        sys.exit("shardswarm not built (%s)" % shard)
    runs = env_int("SW_BENCH_RUNS", 3, 1, 50)
    pp = env_int("SW_BENCH_PP", 128, 2, 4096)
    tg = env_int("SW_BENCH_TG", 64, 1, 4096)
    gpu = os.environ.get("SW_BENCH_GPU", "auto")
    cases = os.environ.get("SW_BENCH_CASES", "tinyllama-1.1b:Q4_0 tinyllama-1.1b:Q4_K_M tinyllama-1.1b:Q8_0 "
                           "tinyllama-1.1b:F16 llama2-7b:Q4_0").split()
    mods, why = nlc_modules(build)
    if not mods:
        print("llama.cpp column skipped: %s" % why, flush=True)
    models = os.environ.get("SW_BENCH_MODELS", os.path.join(build, "bench-models"))
    os.makedirs(models, exist_ok=True)
    ids = [3 + (i * 7919) % 31000 for i in range(pp)]
    print("shardswarm --gpu %s vs llama.cpp Vulkan (node-llama-cpp 3.22.1 prebuilt), pp%d / tg%d, median of %d "
          "alternating runs, load %s" % (gpu, pp, tg, runs, " ".join(open("/proc/loadavg").read().split()[:3])),
          flush=True)
    rows, device, ref_dev = [], "", ""
    for case in cases:
        parts = case.split(":")
        if len(parts) not in (2, 3):
            sys.exit("SW_BENCH_CASES entry %r is not PRESET:TYPE[:LAYERS]" % case)
        preset, typ = parts[0], parts[1]
        layers = parts[2] if len(parts) == 3 else None
        name = "%s%s-%s" % (preset, "-%sL" % layers if layers else "", typ)
        m = os.path.join(models, name + ".gguf")
        if not os.path.isfile(m):
            vocab = find_vocab("ggml-vocab-llama-spm.gguf")
            if not vocab:
                print("%s: vocabulary not found (set SW_SHARED_DATA); skipped" % name)
                continue
            print("generating %s (once) ..." % m, flush=True)
            cmd = [shard, "synth", "--preset", preset, "--type", typ, "--seed", "1", "--vocab", vocab, "-o", m + ".tmp"]
            cmd += ["--layers", layers] if layers else []
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print("%s: synth failed: %s" % (name, r.stderr.strip()[-300:]))
                continue
            os.replace(m + ".tmp", m)
        with open(m, "rb") as fh:  # into the page cache: no engine pays the disk
            while fh.read(1 << 24):
                pass
        ours, ref = [], []
        for i in range(runs):
            for eng in (("ours", "ref") if i % 2 == 0 else ("ref", "ours")):
                if eng == "ours":
                    js = run_ours(shard, m, ids, tg, gpu)
                    if js:
                        ours.append(js)
                        device = js.get("device", device)
                elif mods:
                    js = run_ref(mods, m, pp, tg)
                    if js:
                        ref.append(js)
                        ref_dev = js.get("gpu", ref_dev)
        print("  %s: %d+%d runs" % (name, len(ours), len(ref)), flush=True)
        med = lambda v, k: statistics.median(x[k] for x in v) if v else None
        gb = ours[0]["gpu_weight_bytes"] / 1e9 if ours else None
        rows.append((name, med(ours, "prompt_tps"), med(ref, "prompt_tps"), med(ours, "gen_tps"), med(ref, "gen_tps"),
                     gb))
    bw = os.environ.get("SW_GPU_BW_GBS")
    peak = float(bw) if bw else next((b for k, b in BANDWIDTH if k in device), None)
    f = lambda v: "%.1f" % v if v else "-"
    q = lambda a, b: "%.2f" % (a / b) if a and b else "-"
    print("device: %s (peak %s GB/s%s); llama.cpp's: %s" % (device or "?", "%.0f" % peak if peak else "?",
                                                            " from SW_GPU_BW_GBS" if bw else "", ref_dev or "-"))
    print("%-24s %8s %8s %5s   %8s %8s %5s   %7s %8s %6s" % ("model", "pp ours", "llama", "ratio", "tg ours", "llama",
                                                            "ratio", "GB/tok", "GB/s", "of peak"))
    for name, op, rp, og, rg, gb in rows:
        gbs = gb * og if gb and og else None
        print("%-24s %8s %8s %5s   %8s %8s %5s   %7s %8s %6s" % (
            name, f(op), f(rp), q(op, rp), f(og), f(rg), q(og, rg), "%.3f" % gb if gb else "-",
            "%.3g" % gbs if gbs else "-", "%.0f%%" % (100 * gbs / peak) if gbs and peak else "-"))
    print("(tok/s; ratio = shardswarm / llama.cpp; GB/tok = weights on the device, read once per decoded token; "
          "load after: %s)" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
