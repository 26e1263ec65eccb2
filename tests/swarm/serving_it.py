#!/usr/bin/env python3
"""serving_it.py CASE — the prefix cache and speculative decoding (issue 15) across real
node processes on 127.0.0.1 (4 nodes on a 4-way split of stories260K, the
`shardswarm generate --swarm` client; helpers from pipeline_it.py).

Cases:
  prefix  a client that keeps its identity (--cache DIR) runs a chat's two turns: the second
          (turn 1's prompt + its 40 tokens + 5 new ids) reuses the stages' KV (prefix_reused
          >= 32 in --json-timings) and its 40 greedy tokens equal single-process `generate`;
          the same turn with --no-prefix-cache reuses nothing and gives the same tokens
  spec    --spec 4: 120 greedy tokens equal single-process `generate`, drafts were accepted
          (spec_accepted > 0 at the last stage's /swarm/status); sampled (temperature 0.8,
          seed 5) the same tokens as without --spec
"""
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipeline_it as P  # noqa: E402
from swarm_it import check, fail, harness  # noqa: E402
import swarm_it as S  # noqa: E402


def timings(p):
    js = [l for l in p.output().splitlines() if l.startswith("{\"prompt_tokens\"")]
    if not js:
        fail("no timings from the client:\n%s" % p.output()[-3000:])
    return json.loads(js[-1])


def run(procs, model, boot, name, prompt, n, extra=()):
    c = P.client(procs, model, boot, name, prompt, n, extra)
    rc = P.wait_exit(c)
    check(rc == 0, "%s exited %s:\n%s" % (name, rc, c.output()[-3000:]))
    return P.client_ids(c), timings(c)


def case_prefix():
    S.node_supported()
    model = P.stories()
    with harness.Procs() as procs:
        _, boot = P.start_swarm(procs, model)
        cache = harness.tmpdir("sw-serving-client-")
        p1 = P.PROMPT
        g1, t1 = run(procs, model, boot, "t1", p1, 40, ["--cache", cache])
        check(t1["prefix_reused"] == 0, "turn 1 reused %s positions" % t1["prefix_reused"])
        p2 = " ".join([p1] + g1 + ["261", "378", "285", "266", "350"])
        ref = P.reference(p2, 40)
        g2, t2 = run(procs, model, boot, "t2", p2, 40, ["--cache", cache])
        check(t2["prefix_reused"] >= 32, "turn 2 reused only %s positions" % t2["prefix_reused"])
        check(g2 == ref, "turn 2 differs from single-process:\n%s\n%s" % (g2, ref))
        g3, t3 = run(procs, model, boot, "t2-nocache", p2, 40, ["--cache", cache, "--no-prefix-cache"])
        check(t3["prefix_reused"] == 0, "--no-prefix-cache reused %s positions" % t3["prefix_reused"])
        check(g3 == ref, "turn 2 without the cache differs from single-process")
        print("turn 2: %d of %d prompt positions reused, first token %.1f ms (%.1f ms without the cache); tokens "
              "identical" % (t2["prefix_reused"], t2["prompt_tokens"], t2["ttft_ms"], t3["ttft_ms"]))


def case_spec():
    S.node_supported()
    model = P.stories()
    with harness.Procs() as procs:
        nodes, boot = P.start_swarm(procs, model, api=True)
        ref = P.reference(P.PROMPT, 120)
        g, _ = run(procs, model, boot, "spec", P.PROMPT, 120, ["--spec", "4"])
        check(g == ref, "--spec 4 differs from single-process:\n%s\n%s" % (g, ref))
        with urllib.request.urlopen("http://127.0.0.1:%d/swarm/status" % nodes["n%d" % (P.N - 1)].api, timeout=5) as r:
            pl = json.loads(r.read()).get("pipeline", {})
        check(pl.get("spec_accepted", 0) > 0, "no draft accepted: %s" % pl)
        sampled = ["--temp", "0.8", "--seed", "5"]
        a, _ = run(procs, model, boot, "sampled", P.PROMPT, 120, sampled)
        b, _ = run(procs, model, boot, "sampled-spec", P.PROMPT, 120, sampled + ["--spec", "4"])
        check(a == b, "sampled tokens differ with --spec 4:\n%s\n%s" % (a, b))
        print("--spec 4: %d speculative steps, %d of %d drafts accepted; greedy and sampled tokens identical" %
              (pl.get("spec_steps", 0), pl.get("spec_accepted", 0), pl.get("spec_drafted", 0)))


if __name__ == "__main__":
    harness.main_cases({"prefix": case_prefix, "spec": case_spec})
