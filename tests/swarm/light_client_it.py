#!/usr/bin/env python3
"""light_client_it.py CASE — a light client (no shard, no tokenizer file) gets the model's
tokenizer from the swarm: the header of a loaded node's shard file (HEADER_GET / HEADER),
every piece checked against the torrent's SHA-1 piece hashes. Real `shardswarm node`
processes on 127.0.0.1 (a 2-way split of stories260K) and the `shardswarm generate --swarm`
client; the reference is the single-process `shardswarm generate` on the whole model.

Cases:
  text     no --tokenizer, an empty --cache: `generate --swarm -p "Once upon a time" -n 40
           --temp 0` prints exactly the text of `generate -m stories260K.gguf -p ...`;
           the client logs which node and shard the tokenizer came from; --prompt-ids
           without --ids prints text too (tokenizer from the swarm), with --ids it needs none
  magnet   the same client given only a magnet link: the tokenizer once the metadata came
  forged   every loaded node flips one byte of the header it sends (SW_TEST_FORGE_HEADER):
           the client rejects each reply, prints no text and fails with a message naming
           the piece that does not match; once an honest replica joins, the tokenizer comes
           from it and the text is the reference's
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

N = 2
PROMPT = "Once upon a time"
N_GEN = 40
TOK_LINE = r"tokenizer from node (\S+) \(shard (\d+), (\d+) bytes, verified: (\d+) pieces?; ([\d.]+) ms after asking, " \
           r"([\d.]+) ms after start"


def start_node(procs, model, name, shard, boot=None, env=None):
    cache = model.cache(name, [shard])
    args = [harness.BIN, "node", "--model", model.torrent, "--cache", cache, "--listen", "0", "--threads", "1",
            "--shard", str(shard)]
    if boot:
        args += ["--bootstrap", "127.0.0.1:%d" % boot]
    p = procs.start(name, args, env=env)
    port = int(p.wait_for(r"listening on port (\d+)", timeout=30).group(1))
    node_id = p.wait_for(r"node id ([0-9a-f]{64})", timeout=30).group(1)
    p.wait_for(r"shard %d loaded" % shard, timeout=60)
    return p, port, node_id


def start_swarm(procs, model, env=None):
    p0, boot, id0 = start_node(procs, model, "n0", 0, env=env)
    p1, _, id1 = start_node(procs, model, "n1", 1, boot, env=env)
    return boot, [id0, id1]


def reference():
    r = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "-p", PROMPT, "-n", str(N_GEN), "--temp", "0",
                     "-t", "1"], timeout=120, check_rc=0)
    check(r.stdout.startswith(PROMPT), "reference output: %r" % r.stdout[:200])
    return r.stdout


_n_clients = 0


def light_client(model, boot, model_arg=None, extra=(), wait=60, check_rc=None):
    """The client as a plain subprocess: its stdout (the text) apart from its log lines."""
    global _n_clients
    _n_clients += 1
    empty = model.cache("client-%d" % _n_clients, [])  # an empty --cache: no shard, no tokenizer
    args = [harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % boot, "--model",
            model_arg or model.torrent, "--cache", empty, "-n", str(N_GEN), "--temp", "0", "--wait", str(wait),
            "--json-timings"] + list(extra)
    return harness.run(args, timeout=wait + 60, check_rc=check_rc)


def same_text(got, ref, what):
    # the client ends its output with a newline; single-process generate does not
    out = got[:-1] if got.endswith("\n") and not ref.endswith("\n") else got
    check(out == ref, "%s: text differs from single-process generate:\n ref %r\n got %r" % (what, ref, got))


def tokenizer_line(stderr, what):
    m = re.search(TOK_LINE, stderr)
    check(m is not None, "%s: no 'tokenizer from node' line:\n%s" % (what, stderr[-3000:]))
    return m


def case_text():
    S.node_supported()
    ref = reference()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-light-"), N, source=harness.shared_model())
        boot, ids = start_swarm(procs, m)
        r = light_client(m, boot, extra=["-p", PROMPT], check_rc=0)
        same_text(r.stdout, ref, "-p")
        t = tokenizer_line(r.stderr, "-p")
        check(any(i.startswith(t.group(1).rstrip("\u2026")) for i in ids), "tokenizer from an unknown node %s" % t.group(1))
        nbytes, npieces = int(t.group(3)), int(t.group(4))
        check(nbytes > 0 and npieces >= 1, "bytes %d, pieces %d" % (nbytes, npieces))
        timings = [ln for ln in r.stderr.splitlines() if ln.startswith("{")]
        print("text: %d characters identical; tokenizer: %d bytes (%d piece(s)) from node %s, shard %s, %s ms after "
              "asking, %s ms after start; %s" % (len(ref), nbytes, npieces, t.group(1), t.group(2), t.group(5),
                                                t.group(6), timings[-1] if timings else ""), file=sys.stderr)
        # token ids in, text out: the tokenizer from the swarm again
        ids_in = harness.run([harness.BIN, "tokenize", "-m", harness.shared_model(), PROMPT], check_rc=0)
        prompt_ids = " ".join(re.findall(r"-?\d+", ids_in.stdout))
        r = light_client(m, boot, extra=["--prompt-ids", prompt_ids], check_rc=0)
        tokenizer_line(r.stderr, "--prompt-ids")
        same_text(r.stdout, ref, "--prompt-ids")
        # ids in, ids out: no tokenizer needed, none fetched
        r = light_client(m, boot, extra=["--prompt-ids", prompt_ids, "--ids"], check_rc=0)
        check("tokenizer from" not in r.stderr, "--ids fetched a tokenizer:\n%s" % r.stderr[-2000:])
        check(len(r.stdout.split()) == N_GEN, "--ids printed %r" % r.stdout[:300])


def case_magnet():
    S.node_supported()
    ref = reference()
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-light-"), N, source=harness.shared_model())
        boot, _ = start_swarm(procs, m)
        r = light_client(m, boot, model_arg="magnet:?xt=urn:btih:" + m.info_hash, extra=["-p", PROMPT], check_rc=0)
        same_text(r.stdout, ref, "magnet")
        t = tokenizer_line(r.stderr, "magnet")
        print("magnet: identical text; tokenizer %s bytes, %s ms after start (metadata exchange included)" %
              (t.group(3), t.group(6)), file=sys.stderr)


def case_forged():
    S.node_supported()
    ref = reference()
    forge = {"SW_TEST_FORGE_HEADER": "1"}
    with harness.Procs() as procs:
        m = S.Model(harness.tmpdir("sw-light-"), N, source=harness.shared_model())
        boot, ids = start_swarm(procs, m, env=forge)
        # every loaded node lies: no text, exit 1, the reason named
        r = light_client(m, boot, extra=["-p", PROMPT], wait=8)
        check(r.returncode == 1, "forged headers: rc %s\n%s" % (r.returncode, r.stderr[-3000:]))
        check(r.stdout.strip() == "", "text printed from forged headers: %r" % r.stdout[:300])
        check("does not match the torrent's SHA-1" in r.stderr and "need the model's tokenizer" in r.stderr,
              "no clear reason:\n%s" % r.stderr[-3000:])
        rejected = re.findall(r"rejected the shard header from node (\S+)", r.stderr)
        check(len(set(rejected)) == 2, "both forging nodes rejected: %r" % rejected)
        check("tokenizer from node" not in r.stderr, "a forged header was accepted:\n%s" % r.stderr[-3000:])
        # an honest replica of shard 0 joins: the tokenizer comes from it
        _, _, honest = start_node(procs, m, "r0", 0, boot)
        r = light_client(m, boot, extra=["-p", PROMPT], check_rc=0)
        same_text(r.stdout, ref, "with an honest replica")
        t = tokenizer_line(r.stderr, "with an honest replica")
        check(honest.startswith(t.group(1).rstrip("\u2026")), "tokenizer from %s, not the honest node %s" %
              (t.group(1), honest[:8]))
        print("forged: %d forged replies rejected; then the honest replica %s served it" %
              (len(rejected), t.group(1)), file=sys.stderr)


if __name__ == "__main__":
    cases = {"text": case_text, "magnet": case_magnet, "forged": case_forged}
    harness.main_cases(cases)
