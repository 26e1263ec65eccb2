#!/usr/bin/env python3
"""llamacpp_side.py BUILD — shardswarm beside llama.cpp, measured in the same run on the same
GGUF files and thread counts: decode and prefill tokens/s, runs alternating between the
engines (the first place rotates), medians, the ratio, and the fraction of the memory read
bandwidth each engine's decode reaches.

Reference: bench/refllama.py (llama.cpp's llama-bench built natively from the source
node-llama-cpp 3.22.1 carries, else node-llama-cpp's prebuilt binary). No reference figure
is a constant; without npm/node the llama.cpp columns say why they are empty.

Bandwidth: bench_bwprobe (best of 15 streaming reads of a buffer 16x the LLC) at each thread
count, at the start and the end of the run; the larger is the limit. The fraction is
(bytes of weights one decode step reads) x (tokens/s) / limit, where a step reads every
weight matrix once, one row of token_embd (unless tied to the output), and of the experts
only the n_expert_used chosen ones.

Parts (models synthesized once into SW_BENCH_MODELS, default BUILD/bench-models, seed 1):
  dense    TinyLlama-1.1B shape, each of SW_BENCH_TYPES, each thread count, with the run-time
           kernel family and, where the CPU has AVX-512 VNNI, SW_KERNELS=avx2 as well
  moe      Mixtral-8x7B and Qwen3-30B-A3B shapes cut to SW_BENCH_MOE_LAYERS layers (the
           whole models do not fit a 2-core / 24 GB machine), SW_BENCH_MOE_TYPE
  contend  decode of TinyLlama SW_BENCH_CONTEND_TYPE while one spinning process per thread
           shares the cores (both engines under the same spinners)
  7b       decode of the llama2-7b shape in Q4_0 (3.8 GB; the file bench/70_scale.sh uses),
           SW_BENCH_7B_RUNS runs
Environment: SW_BENCH_PARTS ("dense moe contend 7b"), SW_BENCH_TYPES ("Q4_0 Q8_0 F16 BF16
Q4_K_M Q5_K_M Q6_K Q2_K Q3_K Q3_K_M IQ4_XS"; a file already in SW_BENCH_MODELS, e.g. one
llama.cpp's llama-quantize wrote, is used as it is), SW_BENCH_SIDE_THREADS (default
SW_BENCH_THREADS, the one count the other sections use, else "1 2"), SW_BENCH_RUNS (3),
SW_BENCH_PP (128), SW_BENCH_TG (32), SW_BENCH_KERNELS (auto, or a list such as "avx512
avx2"), SW_BENCH_MOE ("mixtral-8x7b qwen3-30b-a3b"), SW_BENCH_MOE_LAYERS (2),
SW_BENCH_MOE_TYPE (Q4_0), SW_BENCH_CONTEND_TYPE (Q4_0), SW_BENCH_7B_RUNS (1),
SW_BENCH_7B_MODEL (default SW_BENCH_SCALE_MODEL, else synth), SW_BENCH_MODELS, SW_SHARED_DATA; the reference's own knobs are in bench/refllama.py.
Raw runs are written to BUILD/bench-results/llamacpp_side.json.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refllama  # noqa: E402

say = refllama.say
RUN_TIMEOUT = 900
DENSE_PRESET = "tinyllama-1.1b"
VOCABS = {"qwen3-30b-a3b": "ggml-vocab-deepseek-llm.gguf"}
ALL_PARTS = ("dense", "moe", "contend", "7b")


def env_int(name, default, lo, hi):
    v = os.environ.get(name, str(default))
    try:
        n = int(v)
    except ValueError:
        sys.exit("%s=%r is not an integer" % (name, v))
    if not lo <= n <= hi:
        sys.exit("%s=%d is outside %d..%d" % (name, n, lo, hi))
    return n


def env_list(name, default):
    return os.environ.get(name, default).split()


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_has(flag):
    try:
        return any(flag in line.split() for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except OSError:
        return False


def find_vocab(name):
    for d in (os.environ.get("SW_SHARED_DATA", ""), "../shared/data", "/work/shared/data"):
        p = os.path.join(d, "vocab", name)
        if d and os.path.isfile(p):
            return p
    return None


class Bench:
    def __init__(self, build):
        self.build = build
        self.shard = os.path.join(build, "shardswarm")
        self.probe_bin = os.path.join(build, "bench", "bench_bwprobe")
        self.models = os.environ.get("SW_BENCH_MODELS") or os.path.join(build, "bench-models")
        self.runs = env_int("SW_BENCH_RUNS", 3, 1, 50)
        self.threads = []
        for t in env_list("SW_BENCH_SIDE_THREADS", os.environ.get("SW_BENCH_THREADS") or "1 2"):
            if not t.isdigit() or not 1 <= int(t) <= 256:
                sys.exit("SW_BENCH_SIDE_THREADS entry %r is not a thread count (1..256)" % t)
            self.threads.append(int(t))
        self.pp = env_int("SW_BENCH_PP", 128, 2, 4096)
        self.tg = env_int("SW_BENCH_TG", 32, 1, 4096)
        self.raw = {"runs": []}
        self.ref = None
        self.bw = {}

    # ---------------------------------------------------------------- models

    def model(self, preset, typ, layers=None):
        """Path of the synth model (generated once), or None with a message."""
        name = "%s%s-%s" % (preset, "-%dL" % layers if layers else "", typ)
        m = os.path.join(self.models, name + ".gguf")
        if not os.path.isfile(m):
            vocab = find_vocab(VOCABS.get(preset, "ggml-vocab-llama-spm.gguf"))
            if not vocab:
                say("%s: vocabulary not found (set SW_SHARED_DATA); skipped" % name)
                return None
            os.makedirs(self.models, exist_ok=True)
            say("generating %s (once) ..." % m)
            cmd = [self.shard, "synth", "--preset", preset, "--type", typ, "--seed", "1", "--vocab", vocab,
                   "-o", m + ".tmp"] + (["--layers", str(layers)] if layers else [])
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                say("%s: synth failed: %s" % (name, r.stderr.strip()[-300:]))
                return None
            os.replace(m + ".tmp", m)
        with open(m, "rb") as fh:  # into the page cache, so that no engine pays the disk
            while fh.read(1 << 24):
                pass
        return m

    def step_bytes(self, model):
        """Bytes of weights one decode step reads (see the file's comment)."""
        r = subprocess.run([self.shard, "inspect", model, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("shardswarm inspect %s failed: %s" % (model, r.stderr.strip()[-300:]))
        info = json.loads(r.stdout)
        meta = info.get("metadata", {})
        arch = info.get("architecture", "")
        n_exp = meta.get("%s.expert_count" % arch) or 0
        n_used = meta.get("%s.expert_used_count" % arch) or 0
        names = {t["name"] for t in info["tensors"]}
        total = 0.0
        for t in info["tensors"]:
            b = float(t["bytes"])
            if t["name"] == "token_embd.weight" and "output.weight" in names:
                b /= t["shape"][-1]  # one row: the embedding is a lookup
            elif "_exps." in t["name"] and n_exp:
                b *= n_used / n_exp
            total += b
        return total

    # ---------------------------------------------------------------- engines

    def run_ours(self, model, threads, pp, tg, kernels=None):
        ids = [3 + (i * 7919) % 31000 for i in range(pp)]
        env = dict(os.environ)
        if kernels:
            env["SW_KERNELS"] = kernels
        try:
            r = subprocess.run([self.shard, "generate", "-m", model, "--prompt-ids", " ".join(map(str, ids)),
                                "-n", str(tg + 1), "--temp", "0", "--ignore-eos", "--ids", "-t", str(threads),
                                "--json-timings"], capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            say("  shardswarm generate on %s took over %d s" % (model, RUN_TIMEOUT))
            return None
        js = refllama.last_json(r.stderr)
        if r.returncode != 0 or not js:
            say("  shardswarm generate failed on %s: %s" % (model, r.stderr.strip()[-300:]))
            return None
        return js

    def alternate(self, tag, model, threads, pp, tg, kernel_list, runs):
        """Runs alternating between shardswarm (one per kernel family) and the reference;
        {engine: [result, ...]} where engine is 'ours:<family>' or 'ref'."""
        engines = ["ours:%s" % (k or "default") for k in kernel_list] + (["ref"] if self.ref else [])
        res = {e: [] for e in engines}
        for i in range(runs):
            order = engines[i % len(engines):] + engines[:i % len(engines)]
            for e in order:
                if e == "ref":
                    js = self.ref.run(model, threads, pp, tg)
                else:
                    k = e.split(":", 1)[1]
                    js = self.run_ours(model, threads, max(pp, 1), tg, None if k == "default" else k)
                if js:
                    res[e].append(js)
                    self.raw["runs"].append({"case": tag, "threads": threads, "engine": e, "pp": pp, "tg": tg,
                                             "result": js, "load": loadavg()})
        return res

    # ---------------------------------------------------------------- probe

    def probe(self):
        if not os.access(self.probe_bin, os.X_OK):
            say("bench_bwprobe not built (%s): no bandwidth fractions" % self.probe_bin)
            return
        counts = ",".join(str(t) for t in sorted(set(self.threads)))
        r = subprocess.run([self.probe_bin, "--json", "-t", counts], capture_output=True, text=True, timeout=600)
        for line in r.stdout.splitlines():
            js = json.loads(line)
            t, g = js["threads"], js["read_gbps"]
            self.raw.setdefault("probe", []).append(js)
            self.bw[t] = max(self.bw.get(t, 0.0), g)


def med(v, k):
    v = [x[k] for x in v if x.get(k)]
    return statistics.median(v) if v else None


def fmt(v, spec="%.1f"):
    return spec % v if v else "-"


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def frac(bytes_tok, tps, gbps):
    return "%3.0f%%" % (100.0 * bytes_tok * tps / (gbps * 1e9)) if bytes_tok and tps and gbps else "-"


def spread(v, k):
    v = [x[k] for x in v if x.get(k)]
    return "%.1f-%.1f" % (min(v), max(v)) if v else "-"


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    b = Bench(build)
    if not os.access(b.shard, os.X_OK):
        sys.exit("shardswarm not built (%s)" % b.shard)
    parts = env_list("SW_BENCH_PARTS", " ".join(ALL_PARTS))
    for p in parts:
        if p not in ALL_PARTS:
            sys.exit("SW_BENCH_PARTS entry %r is not one of %s" % (p, " ".join(ALL_PARTS)))
    kernels = env_list("SW_BENCH_KERNELS", "auto")
    if kernels == ["auto"]:
        kernels = [None] + (["avx2"] if cpu_has("avx512_vnni") else [])
    t_start = time.time()
    b.ref, why = refllama.find(build)
    ref_label = b.ref.label if b.ref else "none (%s)" % why
    say("reference: %s" % ref_label)
    if not cpu_has("avx512_vnni") and os.environ.get("SW_BENCH_KERNELS", "auto") == "auto":
        say("this CPU has no AVX-512 VNNI: shardswarm runs its AVX2 kernels only (no avx512 rows)")
    b.probe()
    say("start: load %s, read bandwidth %s" % (loadavg(), ", ".join("%d thr %.1f GB/s" % (t, g)
                                                                   for t, g in sorted(b.bw.items()))))
    dense_rows, moe_rows, contend_rows, big_rows = [], [], [], []

    if "dense" in parts:
        for typ in env_list("SW_BENCH_TYPES", "Q4_0 Q8_0 F16 BF16 Q4_K_M Q5_K_M Q6_K Q2_K Q3_K Q3_K_M IQ4_XS"):
            m = b.model(DENSE_PRESET, typ)
            if not m:
                continue
            nb = b.step_bytes(m)
            for t in b.threads:
                res = b.alternate("%s %s" % (DENSE_PRESET, typ), m, t, b.pp, b.tg, kernels, b.runs)
                for k in kernels:
                    o = res["ours:%s" % (k or "default")]
                    fam = (o[0].get("kernels") if o else None) or k or "?"
                    dense_rows.append((typ, nb, t, fam, o, res.get("ref", [])))
                say("  %s %d thr done (load %s)" % (typ, t, loadavg()))

    if "moe" in parts:
        layers = env_int("SW_BENCH_MOE_LAYERS", 2, 1, 64)
        typ = os.environ.get("SW_BENCH_MOE_TYPE", "Q4_0")
        for preset in env_list("SW_BENCH_MOE", "mixtral-8x7b qwen3-30b-a3b"):
            m = b.model(preset, typ, layers)
            if not m:
                continue
            nb = b.step_bytes(m)
            for t in b.threads:
                res = b.alternate("%s %dL %s" % (preset, layers, typ), m, t, b.pp, b.tg, [None], b.runs)
                moe_rows.append(("%s %dL %s" % (preset, layers, typ), nb, t, res["ours:default"],
                                 res.get("ref", [])))
                say("  %s %d thr done (load %s)" % (preset, t, loadavg()))

    t_max = max(b.threads)
    if "contend" in parts:
        typ = os.environ.get("SW_BENCH_CONTEND_TYPE", "Q4_0")
        m = b.model(DENSE_PRESET, typ)
        if m:
            nb = b.step_bytes(m)
            spin = []
            try:
                for _ in range(t_max):  # one busy process per thread the engines use
                    spin.append(subprocess.Popen(["sh", "-c", "while :; do :; done"]))
                time.sleep(0.5)
                res = b.alternate("contend %s %s" % (DENSE_PRESET, typ), m, t_max, 16, b.tg, [None], b.runs)
            finally:
                for p in spin:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
            contend_rows.append(("%s %s" % (DENSE_PRESET, typ), nb, t_max,
                                 res["ours:default"], res.get("ref", [])))

    if "7b" in parts:
        m = (os.environ.get("SW_BENCH_7B_MODEL") or os.environ.get("SW_BENCH_SCALE_MODEL")
             or b.model("llama2-7b", "Q4_0"))
        if m and os.path.isfile(m):
            with open(m, "rb") as fh:
                while fh.read(1 << 24):
                    pass
            nb = b.step_bytes(m)
            runs = env_int("SW_BENCH_7B_RUNS", 1, 1, 20)
            res = b.alternate("llama2-7b Q4_0", m, t_max, 8, 16, [None], runs)
            big_rows.append(("llama2-7b Q4_0", nb, t_max, res["ours:default"], res.get("ref", [])))

    b.probe()  # again at the end: the larger of the two is the limit
    os.makedirs(os.path.join(build, "bench-results"), exist_ok=True)
    b.raw.update({"reference": ref_label, "bandwidth_gbps": b.bw, "pp": b.pp, "tg": b.tg, "runs_per_case": b.runs})
    with open(os.path.join(build, "bench-results", "llamacpp_side.json"), "w") as f:
        json.dump(b.raw, f, indent=1)

    print()
    print("shardswarm vs %s" % ref_label)
    print("median of %d alternating runs; decode = tg%d (shardswarm after a %d-token prompt, llama-bench from an "
          "empty context), prefill = pp%d; tok/s; ratio = shardswarm / llama.cpp" % (b.runs, b.tg, b.pp, b.pp))
    print("BW = weight bytes per decode step x tok/s / best read bandwidth at that thread count (%s)" %
          ", ".join("%d thr %.1f GB/s" % (t, g) for t, g in sorted(b.bw.items())))
    hdr = "%-26s %7s %3s %-6s | %7s %7s %5s %5s %5s | %7s %7s %5s | %s" % (
        "model", "MB/step", "thr", "kern", "decode", "llama", "ratio", "BW", "BWllm", "prefill", "llama", "ratio",
        "decode range ours; llama")
    if dense_rows or moe_rows:
        print(hdr)
    for typ, nb, t, fam, o, r in dense_rows:
        print_row("%s %s" % (DENSE_PRESET, typ), nb, t, fam, o, r, b.bw.get(t))
    for name, nb, t, o, r in moe_rows:
        print_row(name, nb, t, o[0].get("kernels", "?") if o else "?", o, r, b.bw.get(t))
    for title, rows in (("decode under contention: one spinning process per thread on the same cores (pp16, "
                         "tg%d)" % b.tg, contend_rows), ("7B shape (pp8, tg16)", big_rows)):
        if not rows:
            continue
        print(title + ":")
        for name, nb, t, o, r in rows:
            print_row(name, nb, t, o[0].get("kernels", "?") if o else "?", o, r, b.bw.get(t), prefill=False)
    print("(load at the start and the end: see above / %s; %.1f min; raw runs in %s)" % (
        loadavg(), (time.time() - t_start) / 60, os.path.join(build, "bench-results", "llamacpp_side.json")))


def print_row(name, nb, t, fam, o, r, gbps, prefill=True):
    od, rd = med(o, "gen_tps"), med(r, "gen_tps")
    op, rp = (med(o, "prompt_tps"), med(r, "prompt_tps")) if prefill else (None, None)
    print("%-26s %7.0f %3d %-6s | %7s %7s %5s %5s %5s | %7s %7s %5s | %s; %s" % (
        name, nb / 1e6, t, fam[:6], fmt(od, "%.2f"), fmt(rd, "%.2f"), ratio(od, rd), frac(nb, od, gbps),
        frac(nb, rd, gbps), fmt(op), fmt(rp), ratio(op, rp), spread(o, "gen_tps"), spread(r, "gen_tps")))


if __name__ == "__main__":
    main()
