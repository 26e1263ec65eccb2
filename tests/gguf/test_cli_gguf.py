"""test_cli_gguf.py — `shardswarm inspect / split / verify` end to end on stories260K:
outputs, manifest against the files, exit statuses (0 ok, 1 bad input, 2 usage), and no
partial output left behind."""
import hashlib
import json
import os
import shutil
import sys

import harness as h


def sha256(path):
    d = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            d.update(chunk)
    return d.hexdigest()


def sw(*args, rc=None, timeout=120):
    return h.run([h.BIN] + [str(a) for a in args], timeout=timeout, check_rc=rc)


def main():
    model = h.shared_model()
    tmp = h.tmpdir("sw-gguf-cli-")
    try:
        # inspect: table and JSON
        r = sw("inspect", model, rc=0)
        for want in ("GGUF v3", "token_embd.weight", "bytes per layer", "total", "[string × 512]"):
            h.check(want in r.stdout, "inspect output lacks %r" % want)
        j = json.loads(sw("inspect", model, "--json", rc=0).stdout)
        h.check_eq(j["architecture"], "llama", "architecture")
        n_layers = j["n_layers"]
        h.check(n_layers >= 2, "n_layers %r" % n_layers)
        toks = j["metadata"]["tokenizer.ggml.tokens"]
        h.check_eq(toks["count"], 512, "tokens summarised with their count")
        h.check(len(toks["first"]) < 512, "long array summarised")
        names = {t["name"] for t in j["tensors"]}
        h.check_eq(len(j["layers"]), n_layers, "one bytes-per-layer row per layer")
        h.check_eq(sum(t["bytes"] for t in j["tensors"]), j["tensor_bytes"], "tensor bytes")
        h.check(j["total_parameters"] > 0, "parameters counted")

        # inspect: usage and bad input
        sw("inspect", rc=2)
        sw("inspect", model, "--bogus", rc=2)
        r = sw("inspect", os.path.join(tmp, "absent.gguf"), rc=1)
        h.check("absent.gguf" in r.stderr, "names the missing file")
        bad = os.path.join(h.SOURCE, "tests/gguf/malformed/tensor_past_end.gguf")
        r = sw("inspect", bad, rc=1)
        h.check("tensor_past_end.gguf" in r.stderr and "offset at byte" in r.stderr, r.stderr)

        # split: usage errors (exit 2), nothing written
        out = os.path.join(tmp, "shards")
        sw("split", model, "--out", out, rc=2)
        sw("split", model, "--shards", "0", "--out", out, rc=2)
        sw("split", model, "--shards", "two", "--out", out, rc=2)
        sw("split", model, "--shards", "2", rc=2)
        sw("split", model, "--shards", "2", "--out", out, "--owner-pubkey", "xyz", rc=2)
        sw("split", "--shards", "2", "--out", out, rc=2)
        # bad input (exit 1), nothing written
        r = sw("split", model, "--shards", str(n_layers + 1), "--out", out, rc=1)
        h.check("layers" in r.stderr, r.stderr)
        sw("split", os.path.join(tmp, "absent.gguf"), "--shards", "2", "--out", out, rc=1)
        sw("split", bad, "--shards", "2", "--out", out, rc=1)
        h.check(not os.path.exists(out) or not os.listdir(out), "no output after failures")

        # split --dry-run: the plan, nothing written, --out not needed
        r = sw("split", model, "--shards", "2", "--dry-run", rc=0)
        h.check("dry run" in r.stdout and "imbalance" in r.stdout, r.stdout)
        h.check(not os.path.exists(out), "dry run wrote nothing")

        # split: the real thing
        owner = "ab" * 32
        r = sw("split", model, "--shards", "2", "--out", out, "--owner-pubkey", owner, rc=0)
        h.check("imbalance" in r.stdout and "shard 1" in r.stdout, r.stdout)
        m = json.load(open(os.path.join(out, "model.json")))
        h.check_eq(m["n_shards"], 2, "manifest shard count")
        h.check_eq(m["n_layers"], n_layers, "manifest layers")
        h.check_eq(m["owner_pubkey"], owner, "owner key recorded")
        h.check_eq(sorted(os.listdir(out)), ["model.json", "model.torrent", "shard-0.gguf", "shard-1.gguf"], "files")
        # one model = one torrent: its shardswarm dictionary carries the owner key
        t = sw("torrent", "show", os.path.join(out, "model.torrent"), rc=0).stdout
        h.check("owner " + owner in t, "torrent names the owner key:\n" + t)
        seen = set()
        first = 0
        for s in m["shards"]:
            p = os.path.join(out, s["file"])
            h.check_eq(os.path.getsize(p), s["size"], "size of " + s["file"])
            h.check_eq(sha256(p), s["sha256"], "sha256 of " + s["file"])
            sj = json.loads(sw("inspect", p, "--json", rc=0).stdout)
            h.check_eq(sj["shard"]["index"], s["index"], "shard index key")
            h.check_eq(sj["shard"]["layer_first"], first, "contiguous layer ranges")
            h.check_eq(sj["shard"]["layer_last"], s["layer_last"], "layer_last key")
            h.check_eq(sj["shard"]["model_id"], m["model_id"], "model id key")
            h.check_eq(sj["metadata"]["tokenizer.ggml.tokens"]["count"], 512, "tokenizer in every shard")
            first = s["layer_last"] + 1
            for t in sj["tensors"]:
                if t["layer"] is not None:
                    h.check(s["layer_first"] <= t["layer"] <= s["layer_last"], t["name"])
                seen.add(t["name"])
        h.check_eq(first, n_layers, "layers covered")
        h.check_eq(seen, names, "every tensor of the model is in a shard")

        # verify: ok, then missing / wrong size / corrupt, each with a fix
        r = sw("verify", out, rc=0)
        h.check("all 2 shards ok" in r.stdout, r.stdout)
        vj = json.loads(sw("verify", out, "--json", rc=0).stdout)
        h.check(vj["ok"] is True, "verify --json ok")
        s1 = os.path.join(out, "shard-1.gguf")
        keep = os.path.join(tmp, "keep.gguf")
        shutil.copy(s1, keep)
        os.unlink(s1)
        r = sw("verify", out, rc=1)
        h.check("missing" in r.stdout and "fetch" in r.stdout, r.stdout)
        with open(keep, "rb") as f, open(s1, "wb") as g:
            g.write(f.read()[:1000])
        r = sw("verify", out, rc=1)
        h.check("wrong size" in r.stdout, r.stdout)
        data = bytearray(open(keep, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(s1, "wb").write(bytes(data))
        r = sw("verify", out, rc=1)
        h.check("corrupt" in r.stdout and "SHA-256" in r.stdout, r.stdout)
        shutil.copy(keep, s1)
        sw("verify", out, rc=0)
        sw("verify", rc=2)
        sw("verify", out, "--bogus", rc=2)
        r = sw("verify", tmp, rc=1)
        h.check("model.json" in r.stderr, r.stderr)

        # no temporary files anywhere
        for root, _, files in os.walk(tmp):
            for f in files:
                h.check(".tmp" not in f, "temporary file left: " + os.path.join(root, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok test_cli_gguf")


if __name__ == "__main__":
    main()
