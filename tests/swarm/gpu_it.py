#!/usr/bin/env python3
"""gpu_it.py CASE — a swarm with one stage on a Vulkan device (Mesa's lavapipe), across real
node processes on 127.0.0.1 (the pipeline_it.py harness: stories260K split 4 ways).

Cases (issue 14):
  equal  the node of shard 1 runs `--gpu 0` (lavapipe): 60 greedy tokens of `generate
         --swarm` equal single-process `generate`; the node's log names the device and the
         layers on it
  lost   the node of shard 1 runs on lavapipe (0.1 s per step) and its device is lost
         mid-session (SHARDSWARM_VK_LOSE_AFTER); a CPU replica of shard 1 joins once the
         session is on the GPU node: the step fails like a dropped stage (SW_ESTATE), the
         session fails over, the 60 tokens are the same
  moe    qwen3moe-nano F32 (8 experts, 2 used), 3 layers in 3 shards, the middle node on
         lavapipe with its MoE layer (router, routing, expert matmuls) on the device: 60
         greedy tokens equal single-process `generate` on the CPU, logits within 1e-3 of
         each row's spread

Skips when lavapipe (mesa-vulkan-drivers) is not installed or the build has no Vulkan.
"""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_it as P  # noqa: E402
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

N_GEN = 60


def lavapipe():
    icds = sorted(glob.glob("/usr/share/vulkan/icd.d/lvp_icd*.json"))
    if not icds:
        harness.skip("lavapipe is not installed (mesa-vulkan-drivers: scripts/install-deps test)")
    env = {"VK_ICD_FILENAMES": icds[0]}
    r = subprocess.run([harness.BIN, "generate", "-m", harness.shared_model(), "--prompt-ids", "1", "-n", "1",
                        "--temp", "0", "--ids", "--gpu", "0"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, **env))
    if "this build has no Vulkan" in r.stderr:
        harness.skip("this build has no Vulkan backend (libvulkan-dev and glslc)")
    return env


def start_node(procs, model, name, shard, boot=None, extra=(), env=None):
    cache = model.cache(name, [shard])
    args = [harness.BIN, "node", "--model", model.torrent, "--cache", cache, "--listen", "0", "--threads", "1",
            "--shard", str(shard)] + list(extra)
    if boot:
        args += ["--bootstrap", "127.0.0.1:%d" % boot]
    p = procs.start(name, args, env=env)
    port = int(p.wait_for(r"listening on port (\d+)", timeout=30).group(1))
    return P.PNode(p, port)


def swarm(procs, m, gpu_env, replica=False):
    nodes = {"n0": start_node(procs, m, "n0", 0)}
    boot = nodes["n0"].port
    nodes["n1"] = start_node(procs, m, "n1", 1, boot, ["--gpu", "0"], env=gpu_env)
    for k in range(2, P.N):
        nodes["n%d" % k] = start_node(procs, m, "n%d" % k, k, boot)
    if replica:
        nodes["r1"] = start_node(procs, m, "r1", 1, boot)
    for n in nodes.values():
        n.proc.wait_for(r"shard \d+ loaded", timeout=60)
    return nodes, boot


def case_equal():
    S.node_supported()
    env = lavapipe()
    with harness.Procs() as procs:
        m = P.stories()
        nodes, boot = swarm(procs, m, env)
        nodes["n1"].proc.wait_for(r"\[GPU\] layers \d+-\d+ on llvmpipe", timeout=30)
        ref = P.reference(P.PROMPT, N_GEN)
        c = P.client(procs, m, boot, "client", P.PROMPT, N_GEN)
        rc = P.wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = P.client_ids(c)
        check(got == ref, "tokens differ from single-process generate:\n ref %s\n got %s" % (ref[:30], got[:30]))
        print("equal: shard 1 on lavapipe, %d tokens identical to single-process" % len(got), file=sys.stderr)


def case_lost():
    S.node_supported()
    env = lavapipe()
    with harness.Procs() as procs:
        m = P.stories()
        nodes = {"n0": start_node(procs, m, "n0", 0)}
        boot = nodes["n0"].port
        # n1: on lavapipe, 0.1 s per step, its device lost after 5 (load-time measurement)
        # + 1 (prompt) + 20 steps; the replica r1 (CPU) joins once n1 serves the session
        nodes["n1"] = start_node(procs, m, "n1", 1, boot, ["--gpu", "0", "--step-delay-us", "100000"],
                                 env=dict(env, SHARDSWARM_VK_LOSE_AFTER="26"))
        for k in range(2, P.N):
            nodes["n%d" % k] = start_node(procs, m, "n%d" % k, k, boot)
        for n in nodes.values():
            n.proc.wait_for(r"shard \d+ loaded", timeout=60)
        ref = P.reference(P.PROMPT, N_GEN)
        c = P.client(procs, m, boot, "client", P.PROMPT, N_GEN)
        nodes["n1"].proc.wait_for(r"stage 1 of 4 opened", timeout=60)
        nodes["r1"] = start_node(procs, m, "r1", 1, boot)
        nodes["r1"].proc.wait_for(r"shard 1 loaded", timeout=60)
        rc = P.wait_exit(c)
        check(rc == 0, "client failed (rc %s):\n%s" % (rc, c.output()[-3000:]))
        got = P.client_ids(c)
        check(got == ref, "tokens differ after the device was lost:\n ref %s\n got %s" % (ref[:30], got[:30]))
        check(re.search(r"device lost", nodes["n1"].proc.output()) is not None,
              "n1 never lost its device:\n%s" % nodes["n1"].proc.output()[-2000:])
        check(re.search(r"stage 1 of 4 opened", nodes["r1"].proc.output()) is not None,
              "the replica never took over:\n%s" % c.output()[-2000:])
        print("lost: n1's device lost mid-session, r1 took over; %d tokens identical" % len(got), file=sys.stderr)


def case_moe():
    S.node_supported()
    env = lavapipe()
    prompt = "1 403 407 261 378 285 266 350 432 306 286"
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-gpu-moe-"), 3, synth=["--preset", "qwen3moe-nano", "--type", "F32", "--layers",
                                                             "3", "--seed", "5", "--vocab", harness.shared_model()])
        nodes = {"n0": start_node(procs, m, "n0", 0)}
        boot = nodes["n0"].port
        nodes["n1"] = start_node(procs, m, "n1", 1, boot, ["--gpu", "0"], env=env)
        nodes["n2"] = start_node(procs, m, "n2", 2, boot)
        for n in nodes.values():
            n.proc.wait_for(r"shard \d+ loaded", timeout=60)
        nodes["n1"].proc.wait_for(r"\[GPU\] mixture of experts \(8, 2 per token\).* run on the device", timeout=30)
        nodes["n1"].proc.wait_for(r"\[GPU\] layers \d+-\d+ on llvmpipe", timeout=30)
        got, a, b = P.swarm_vs_single(procs, m, boot, prompt, N_GEN, "gpu-moe")
        check(len(a) == len(b) and len(a) > 0, "logits: %d vs %d floats" % (len(a), len(b)))
        V = 512
        worst = 0.0
        for r0 in range(0, len(a), V):
            x, y = a[r0:r0 + V], b[r0:r0 + V]
            worst = max(worst, max(abs(p - q) for p, q in zip(x, y)) / max(1e-9, max(x) - min(x)))
        check(worst < 1e-3, "logits differ by %g of the spread" % worst)
        print("moe: shard 1's MoE layer on lavapipe, %d tokens identical, worst logit difference %.2e of the spread"
              % (len(got), worst), file=sys.stderr)


if __name__ == "__main__":
    harness.main_cases({"equal": case_equal, "lost": case_lost, "moe": case_moe})
