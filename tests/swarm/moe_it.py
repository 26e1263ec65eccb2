#!/usr/bin/env python3
"""moe_it.py CASE — a mixture-of-experts model in a real swarm, split into 3 shards by
`split` (by bytes, a layer and all its experts in one shard), 3 `shardswarm node`
processes on 127.0.0.1 and the `generate --swarm` client: 60 greedy tokens identical to
single-process `generate` on the whole file, logits within 1e-4 (f32 on the wire).
  qwen3moe   qwen3moe-nano Q8_0 (8 experts, 2 used, q/k norm, head size 128)
  gpt-oss    gpt-oss-nano MXFP4 (attention sinks, alternating sliding window, YaRN,
             biased experts, clamped SwiGLU)
  deepseek3  deepseek3-nano Q8_0 (latent attention, a dense first layer, sigmoid grouped
             routing with selection bias, shared expert, YaRN): one layer per shard"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

N_SHARDS = 3
N_GEN = 60
PROMPT = "1 403 407 261 378 285 266 350 432 306 286"


CASES = {"qwen3moe": ("qwen3moe-nano", "Q8_0"), "gpt-oss": ("gpt-oss-nano", "MXFP4"),
         "deepseek3": ("deepseek3-nano", "Q8_0")}


def main(case):
    S.node_supported()
    vocab = harness.shared_model()
    preset, typ = CASES[case]
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-moe-"), N_SHARDS,
                    synth=["--preset", preset, "--type", typ, "--layers", "3", "--seed", "5", "--vocab", vocab])
        dense_lead = 1 if case == "deepseek3" else 0  # its layer 0 is dense (one layer per shard)
        for k in range(N_SHARDS):  # every shard holds whole layers: all experts of each
            r = harness.run([harness.BIN, "inspect", m.shard_path(k)], timeout=30)
            want = "ffn_gate_exps" if k >= dense_lead else "ffn_gate.weight"
            check(r.returncode == 0 and want in r.stdout + r.stderr,
                  "shard %d holds no %s:\n%s" % (k, want, (r.stdout + r.stderr)[-1500:]))
        nodes = {"n0": P.start_node(procs, m, "n0", 0)}
        boot = nodes["n0"].port
        for k in range(1, N_SHARDS):
            nodes["n%d" % k] = P.start_node(procs, m, "n%d" % k, k, boot)
        for n in nodes.values():
            n.proc.wait_for(r"shard \d+ loaded", timeout=60)
        got, a, b = P.swarm_vs_single(procs, m, boot, PROMPT, N_GEN, "moe")
        check(len(a) == len(b), "logits: %d vs %d floats" % (len(a), len(b)))
        worst = max(abs(x - y) for x, y in zip(a, b))
        check(worst <= 1e-4, "logits differ by %g" % worst)
        print("%s: %d tokens identical over %d shards, worst logit difference %g" % (preset, N_GEN, N_SHARDS, worst),
              file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "qwen3moe")
    print("ok")
