"""test_generate_cli.py — `shardswarm generate`, `chat` and `synth` as a user runs them:
pinned greedy tokens, SIMD kernels == scalar reference kernels (greedy tokens), split shards
run one after another == the whole model (logits), the context limit, flag validation."""
import hashlib
import json
import os
import struct
import sys

import harness as h

# "Once upon a time" on stories260K, greedy (see tests/infer/test_model.c).
GREEDY = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
          410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394,
          261, 370, 432, 352, 266, 268, 388, 426]


def gen(args, env=None, check_rc=0, timeout=120):
    e = dict(os.environ)
    if env:
        e.update(env)
    return h.run([h.BIN, "generate"] + args, timeout=timeout, check_rc=check_rc, env=e)


def ids_of(r):
    return [int(x) for x in r.stdout.split()]


def read_f32(path):
    data = open(path, "rb").read()
    return struct.unpack("<%df" % (len(data) // 4), data)


def max_rel(a, b):
    h.check(len(a) == len(b), "logit files differ in length: %d vs %d" % (len(a), len(b)))
    scale = max(abs(x) for x in b) or 1.0
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main():
    model = h.shared_model()
    tmp = h.tmpdir("sw-infer-cli-")

    # Pinned greedy continuation, as ids and as text.
    r = gen(["-m", model, "-p", "Once upon a time", "-n", "40", "--temp", "0", "--ids", "-t", "2"])
    h.check_eq(ids_of(r), GREEDY, "greedy ids")
    r = gen(["-m", model, "-p", "Once upon a time", "-n", "40", "--temp", "0", "--json-timings"])
    h.check(r.stdout.startswith("Once upon a time, there was a little girl named Lily."),
            "greedy text: %r" % r.stdout[:120])
    timing = [l for l in r.stderr.splitlines() if l.startswith("{")]
    h.check(timing, "no JSON timing line in: %s" % r.stderr)
    t = json.loads(timing[-1])
    h.check_eq(t["prompt_tokens"], 5, "prompt tokens")
    h.check_eq(t["gen_tokens"], 40, "generated tokens")
    h.check(t["gen_tps"] > 0 and t["prompt_tps"] > 0, "speeds: %r" % t)
    h.check("tok/s" in r.stderr, "speed line: %s" % r.stderr)

    # Same seed, same text; sampling flags accepted.
    sargs = ["-m", model, "-p", "Once upon a time", "-n", "30", "--temp", "0.9", "--top-k", "20",
             "--top-p", "0.9", "--min-p", "0.02", "--repeat-penalty", "1.1", "--seed", "42", "--ids"]
    h.check_eq(ids_of(gen(sargs)), ids_of(gen(sargs)), "seeded sampling")

    # Synthetic models of every weight type: SIMD kernels give the scalar reference's tokens.
    models = [model]
    for typ in ["F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K", "Q6_K"]:
        p = os.path.join(tmp, "nano-%s.gguf" % typ)
        h.run([h.BIN, "synth", "--preset", "nano", "--type", typ, "-o", p, "--seed", "11",
               "--vocab", model], timeout=120, check_rc=0)
        models.append(p)
    for m in models:
        args = ["-m", m, "-p", "Once upon a time", "-n", "24", "--temp", "0", "--ids", "-t", "2",
                "--ignore-eos"]
        simd = ids_of(gen(args))
        ref = ids_of(gen(args, env={"SW_KERNELS": "ref"}))
        h.check_eq(simd, ref, "SIMD vs reference kernels on %s" % os.path.basename(m))
        h.check_eq(len(simd), 24, "tokens generated on %s" % os.path.basename(m))

    # The low-bit types: synth writes them, generate runs them. With quantized activations a
    # 1e-7 difference in another op's summation order can flip an 8-bit rounding on a random
    # model (flat logits) and greedy paths then part (docs/kernels.md, "Numerics"), so here
    # SIMD and reference must agree on the first tokens only; test_model holds each type's
    # logits to F32's, test_kernels each kernel to the reference.
    for typ in ["Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "MXFP4", "IQ2_XXS", "IQ2_XS", "IQ2_S",
                "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]:
        p = os.path.join(tmp, "nano-%s.gguf" % typ)
        h.run([h.BIN, "synth", "--preset", "nano", "--type", typ, "-o", p, "--seed", "11",
               "--vocab", model], timeout=120, check_rc=0)
        args = ["-m", p, "-p", "Once upon a time", "-n", "24", "--temp", "0", "--ids", "-t", "2",
                "--ignore-eos"]
        simd = ids_of(gen(args))
        ref = ids_of(gen(args, env={"SW_KERNELS": "ref"}))
        h.check_eq(len(simd), 24, "tokens generated on %s" % typ)
        h.check_eq(simd, ids_of(gen(args)), "greedy tokens repeat on %s" % typ)
        h.check(all(0 <= t < 512 for t in simd), "token ids in the vocabulary on %s: %s" % (typ, simd))
        h.check_eq(simd[:4], ref[:4], "SIMD vs reference, first tokens on %s" % typ)

    # synth is deterministic from the command line too; --list names the presets.
    a, b = os.path.join(tmp, "a.gguf"), os.path.join(tmp, "b.gguf")
    for p in (a, b):
        h.run([h.BIN, "synth", "--preset", "qwen2-nano", "--type", "Q4_0", "-o", p, "--seed", "7",
               "--vocab", model], check_rc=0)
    h.check_eq(sha(a), sha(b), "synth determinism")
    r = h.run([h.BIN, "synth", "--list"], check_rc=0)
    for name in ("tinyllama-1.1b", "llama-160m", "qwen2-0.5b", "tiny", "llama2-7b", "llama3-8b"):
        h.check(name in r.stdout, "preset %s listed" % name)
    h.run([h.BIN, "synth", "--preset", "nope", "--type", "F16", "-o", a], check_rc=2)
    h.run([h.BIN, "synth", "--preset", "nano", "--type", "TQ2_0", "-o", a], check_rc=2)
    h.run([h.BIN, "synth", "--preset", "nano", "--type", "F16"], check_rc=2)
    h.run([h.BIN, "synth", "--preset", "nano", "--type", "F16", "-o", a, "--seed", "x"], check_rc=2)
    h.run([h.BIN, "synth", "--preset", "nano", "--type", "F16", "-o", a, "--vocab", "/nonexistent.gguf"],
          check_rc=1)

    # The shards of `split`, one after another in one process == the whole model.
    for src, n in ((model, 3), (os.path.join(tmp, "nano-Q4_K_M.gguf"), 2)):
        out = os.path.join(tmp, "split-%d" % n)
        h.run([h.BIN, "split", src, "--shards", str(n), "--out", out, "-q"], timeout=120, check_rc=0)
        shards = [os.path.join(out, "shard-%d.gguf" % i) for i in range(n)]
        lw, ls = os.path.join(tmp, "whole.f32"), os.path.join(tmp, "shards.f32")
        base = ["-p", "Once upon a time", "-n", "12", "--temp", "0", "--ids", "--ignore-eos"]
        rw = gen(["-m", src, "--logits-out", lw] + base)
        sargs = []
        for s in shards:
            sargs += ["-m", s]
        rs = gen(sargs + ["--logits-out", ls] + base)
        h.check_eq(ids_of(rs), ids_of(rw), "tokens from %d shards" % n)
        d = max_rel(read_f32(ls), read_f32(lw))
        h.check(d <= 1e-5, "logits of %d shards differ from the whole model by %g" % (n, d))
        # out of order: a clear error, not a crash
        r = gen(["-m", shards[1], "-m", shards[0]] + base, check_rc=1)
        h.check("layer" in r.stderr, "out-of-order message: %s" % r.stderr)

    # Context limit: a prompt longer than the context is an error; generation stops at it.
    r = gen(["-m", model, "-p", "Once upon a time there was a dog", "--ctx", "4", "-n", "5"], check_rc=1)
    h.check("context" in r.stderr, "context message: %s" % r.stderr)
    r = gen(["-m", model, "-p", "Once upon a time", "--ctx", "12", "-n", "50", "--temp", "0", "--ids",
             "--ignore-eos"])
    h.check("context full" in r.stderr, "context-full note: %s" % r.stderr)
    h.check_eq(ids_of(r), GREEDY[:8], "tokens up to the context limit")

    # Flag validation: usage errors exit 2 naming the flag, bad files exit 1.
    h.check("-m" in gen(["-p", "x"], check_rc=2).stderr, "missing -m")
    h.check("--temp" in gen(["-m", model, "-p", "x", "--temp", "hot"], check_rc=2).stderr, "bad --temp")
    h.check("-n" in gen(["-m", model, "-p", "x", "-n", "-3"], check_rc=2).stderr, "bad -n")
    gen(["-m", model, "-p", "x", "--bogus"], check_rc=2)
    gen(["-m", model], check_rc=2)
    gen(["-m", model, "-p", "x", "--prompt-ids", "1 2"], check_rc=2)
    r = gen(["-m", os.path.join(tmp, "missing.gguf"), "-p", "x"], check_rc=1)
    h.check("missing.gguf" in r.stderr, "missing file named: %s" % r.stderr)
    vocab = os.path.join(h.SHARED, "vocab", "ggml-vocab-llama-spm.gguf")
    if os.path.exists(vocab):
        r = gen(["-m", vocab, "-p", "x"], check_rc=1)
        h.check("architecture" in r.stderr or "missing" in r.stderr, "no-model message: %s" % r.stderr)
    gen(["-m", model, "--prompt-ids", "1 99999", "-n", "2"], check_rc=1)

    # chat: a scripted conversation on stdin.
    r = h.run([h.BIN, "chat", "-m", model, "--temp", "0", "-n", "16"], input="Hello\n/reset\nHi\n",
              timeout=60, check_rc=0)
    h.check(len(r.stdout.strip().splitlines()) >= 2, "two replies: %r" % r.stdout)
    h.run([h.BIN, "chat", "-m", model, "--template", "klingon"], input="", check_rc=2)
    print("ok")


if __name__ == "__main__":
    main()
