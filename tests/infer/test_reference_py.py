"""test_reference_py.py — an independent llama forward pass in plain Python (its own GGUF
parser, doubles, no code shared with src/infer) run on stories260K; the greedy tokens of
`shardswarm generate` must equal it token for token, and the final logits must agree.
Only F32 tensors are read (stories260K is all F32)."""
import math
import os
import struct
import sys

import harness as h

PROMPT = [1, 403, 407, 261, 378]  # BOS + "Once upon a time" (SentencePiece)
N_GEN = 24


class Gguf:
    """GGUF v2/v3: header, metadata, tensor infos (spec: github.com/ggml-org/ggml docs/gguf.md)."""
    SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def __init__(self, path):
        self.b = open(path, "rb").read()
        self.o = 0
        h.check(self.b[:4] == b"GGUF", "not GGUF")
        self.o = 4
        self.version = self.rd("I")
        n_t, n_kv = self.rd("Q"), self.rd("Q")
        self.kv = {}
        for _ in range(n_kv):
            k = self.rs()
            self.kv[k] = self.rv(self.rd("I"))
        infos = []
        for _ in range(n_t):
            name = self.rs()
            nd = self.rd("I")
            ne = [self.rd("Q") for _ in range(nd)]
            typ, off = self.rd("I"), self.rd("Q")
            infos.append((name, ne, typ, off))
        align = self.kv.get("general.alignment", 32)
        base = (self.o + align - 1) // align * align
        self.t = {}
        for name, ne, typ, off in infos:
            h.check(typ == 0, "tensor %s is not F32" % name)
            n = 1
            for x in ne:
                n *= x
            flat = struct.unpack_from("<%df" % n, self.b, base + off)
            if len(ne) == 2:
                self.t[name] = [flat[r * ne[0]:(r + 1) * ne[0]] for r in range(ne[1])]
            else:
                self.t[name] = flat

    def rd(self, f):
        v = struct.unpack_from("<" + f, self.b, self.o)[0]
        self.o += struct.calcsize("<" + f)
        return v

    def rs(self):
        n = self.rd("Q")
        s = self.b[self.o:self.o + n]
        self.o += n
        return s.decode("utf-8", "replace")

    def rv(self, t):
        if t == 8:
            return self.rs()
        if t == 9:
            et, n = self.rd("I"), self.rd("Q")
            return [self.rv(et) for _ in range(n)]
        return self.rd(self.SCALAR[t])


def main():
    path = h.shared_model()
    g = Gguf(path)
    a = g.kv["general.architecture"]
    E, L = g.kv[a + ".embedding_length"], g.kv[a + ".block_count"]
    H = g.kv[a + ".attention.head_count"]
    HK = g.kv.get(a + ".attention.head_count_kv", H)
    hd = E // H
    nrot = g.kv.get(a + ".rope.dimension_count", hd)
    eps = g.kv[a + ".attention.layer_norm_rms_epsilon"]
    base = g.kv.get(a + ".rope.freq_base", 10000.0)
    W = g.t

    def mv(M, x):
        return [sum(p * q for p, q in zip(row, x)) for row in M]

    def rms(x, w):
        s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
        return [v * s * g_ for v, g_ in zip(x, w)]

    def rope(v, p):  # llama GGUF: adjacent pairs (2i, 2i+1) within each head
        v = list(v)
        for hh in range(len(v) // hd):
            for i in range(nrot // 2):
                th = p * base ** (-2.0 * i / nrot)
                c, s = math.cos(th), math.sin(th)
                x0, x1 = v[hh * hd + 2 * i], v[hh * hd + 2 * i + 1]
                v[hh * hd + 2 * i], v[hh * hd + 2 * i + 1] = x0 * c - x1 * s, x0 * s + x1 * c
        return v

    K = [[] for _ in range(L)]
    V = [[] for _ in range(L)]

    def step(tok, p):
        x = list(W["token_embd.weight"][tok])
        for l in range(L):
            b = "blk.%d." % l
            y = rms(x, W[b + "attn_norm.weight"])
            q = rope(mv(W[b + "attn_q.weight"], y), p)
            K[l].append(rope(mv(W[b + "attn_k.weight"], y), p))
            V[l].append(mv(W[b + "attn_v.weight"], y))
            out = [0.0] * E
            for hh in range(H):
                g_ = hh // (H // HK)  # grouped-query attention
                qs = q[hh * hd:(hh + 1) * hd]
                sc = [sum(u * w for u, w in zip(qs, K[l][t][g_ * hd:(g_ + 1) * hd])) / math.sqrt(hd)
                      for t in range(p + 1)]
                m = max(sc)
                e = [math.exp(s - m) for s in sc]
                z = sum(e)
                for t in range(p + 1):
                    for d in range(hd):
                        out[hh * hd + d] += e[t] / z * V[l][t][g_ * hd + d]
            x = [u + w for u, w in zip(x, mv(W[b + "attn_output.weight"], out))]
            y = rms(x, W[b + "ffn_norm.weight"])
            gt, up = mv(W[b + "ffn_gate.weight"], y), mv(W[b + "ffn_up.weight"], y)
            act = [u / (1 + math.exp(-u)) * w for u, w in zip(gt, up)]
            x = [u + w for u, w in zip(x, mv(W[b + "ffn_down.weight"], act))]
        out_w = W.get("output.weight", W["token_embd.weight"])
        return mv(out_w, rms(x, W["output_norm.weight"]))

    p = 0
    for t in PROMPT:
        logits = step(t, p)
        p += 1
    ref = []
    for i in range(N_GEN):
        t = max(range(len(logits)), key=lambda j: logits[j])
        ref.append(t)
        if i + 1 < N_GEN:  # generate feeds every token but the last
            logits = step(t, p)
            p += 1

    tmp = h.tmpdir("sw-infer-ref-")
    lf = os.path.join(tmp, "logits.f32")
    r = h.run([h.BIN, "generate", "-m", path, "-p", "Once upon a time", "-n", str(N_GEN), "--temp", "0",
               "--ids", "--ignore-eos", "--logits-out", lf], timeout=60, check_rc=0)
    got = [int(x) for x in r.stdout.split()]
    h.check_eq(got, ref, "greedy tokens: shardswarm vs the independent Python forward pass")
    data = open(lf, "rb").read()
    n_vocab = len(logits)
    h.check_eq(len(data), 4 * n_vocab * N_GEN, "logits file size")
    ours = struct.unpack_from("<%df" % n_vocab, data, len(data) - 4 * n_vocab)
    scale = max(abs(x) for x in logits)
    diff = max(abs(x - y) for x, y in zip(ours, logits)) / scale
    # f16 KV cache and f32 arithmetic against doubles: ~1e-3 relative.
    h.check(diff < 5e-3, "final logits differ from the Python reference by %.3g (relative)" % diff)
    text = "".join(g.kv["tokenizer.ggml.tokens"][t] for t in ref).replace("\u2581", " ")
    print("ok: %d tokens match, logits within %.2g: Once upon a time%s" % (N_GEN, diff, text))


if __name__ == "__main__":
    main()
