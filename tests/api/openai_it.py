#!/usr/bin/env python3
"""openai_it.py CASE — the OpenAI-compatible API of `shardswarm node --api` on a 2-node swarm
of a split stories260K (real processes on 127.0.0.1, ports from the kernel). The reference
is single-process `shardswarm generate -m stories260K.gguf` (greedy).

Cases:
  completions  GET /v1/models and /v1/models/{id}; POST /v1/completions greedy, 40 tokens, text == generate's;
               the same streamed (SSE deltas concatenated ==, [DONE], usage chunk); a stop
               string cuts the text before it and never leaks; token-id prompt == text prompt;
               temperature 0.8 with seed 7 == `generate --temp 0.8 --seed 7`
  chat         /v1/chat/completions: stories260K has no chat template -> the ChatML fallback;
               content == /v1/completions of the ChatML-formatted prompt; streamed: role
               chunk first, deltas ==, finish chunk, include_usage, [DONE]
  concurrent   4 requests at once (2 streamed, 2 not), each == the reference
  errors       bad JSON, n=2, wrong field types, logprobs, echo, multiple prompts, unknown
               model, unknown route, oversized body (413), context exceeded: each the right
               status and an OpenAI error object naming the field; the node stays healthy
  notready     a swarm missing shard 1: 503 naming shard 1 (and no tokenizer on a client)
  disconnect   a client drops mid-stream: the node stays healthy and serves the next request
               with the reference text
  client       a `node --client --api` (no shard) is the entry: tokenizer from the swarm,
               same text as the reference
  nodejs       the official OpenAI Node client (openai@4, npm into <build>/npm/clients): chat (stream
               and not) and completions
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "swarm"))
import swarm_it as S  # noqa: E402
from swarm_it import check, harness  # noqa: E402

PROMPT = "Once upon a time"
N_GEN = 40
CHATML = "<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n"


def reference(prompt=PROMPT, n=N_GEN):
    """The completion text of single-process generate (prompt echo and the final newline cut)."""
    r = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "-p", prompt, "-n", str(n), "--temp", "0",
                     "-t", "1", "--no-echo"], timeout=120, check_rc=0)
    check(r.stdout.endswith("\n"), "generate output: %r" % r.stdout[-100:])
    return r.stdout[:-1]


def start_node(procs, model, name, shard=None, boot=None, api=False, client=False, wait_loaded=True):
    cache = model.cache(name, [shard] if shard is not None else [])
    args = [harness.BIN, "node", "--model", model.torrent, "--cache", cache, "--listen", "0", "--threads", "1",
            "--status-interval", "1000"]
    if client:
        args.append("--client")
    else:
        args += ["--shard", str(shard)]
    if api:
        args += ["--api", "0"]
    if boot:
        args += ["--bootstrap", "127.0.0.1:%d" % boot]
    p = procs.start(name, args)
    port = int(p.wait_for(r"listening on port (\d+)", timeout=30).group(1))
    api_port = int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/swarm/status", timeout=30).group(1)) if api else None
    if wait_loaded and shard is not None:
        p.wait_for(r"shard %d loaded" % shard, timeout=60)
    return p, port, api_port


def request(port, method, path, body=None, timeout=60, raw=None, headers=None):
    """(status, parsed JSON or text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read().decode("utf-8")
    c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


def stream(port, path, body, timeout=60):
    """POST with stream: the parsed chunks (JSON), and whether [DONE] ended it; checks the framing."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        harness.fail("stream %s: status %d: %s" % (path, r.status, r.read()[:500]))
    check(r.getheader("Content-Type", "").startswith("text/event-stream"), "content type %r" % r.getheader("Content-Type"))
    raw = r.read()
    c.close()
    text = raw.decode("utf-8")  # every chunk valid UTF-8
    events = text.split("\n\n")
    check(events[-1] == "", "the stream ends with a blank line: %r" % text[-80:])
    chunks, done = [], False
    for ev in events[:-1]:
        check(ev.startswith("data: "), "an SSE event without 'data: ': %r" % ev[:100])
        payload = ev[6:]
        if payload == "[DONE]":
            done = True
            continue
        check(not done, "data after [DONE]")
        chunks.append(json.loads(payload))
    check(done, "no [DONE] at the end of the stream: %r" % text[-300:])
    return chunks, done


def wait_ready(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            st, s = request(port, "GET", "/swarm/status", timeout=5)
            if st == 200 and s.get("ready"):
                return
        except OSError:
            pass
        time.sleep(0.1)
    harness.fail("the swarm is not ready within %ss" % timeout)


def wait_generation(port, timeout=30):
    """Until /v1/completions answers 200 (the tokenizer came, the route is there)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        st, r = request(port, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 1, "temperature": 0})
        if st == 200:
            return
        last = (st, r)
        time.sleep(0.2)
    harness.fail("no generation within %ss: %r" % (timeout, last))


class Swarm2:
    """n0 (shard 0) with --api, n1 (shard 1); extra nodes on demand."""

    def __init__(self, procs, shard1=True, api_on=0, source=None):
        S.node_supported()
        self.procs = procs
        self.m = S.Model(harness.tmpdir("sw-oai-"), 2, source=source or harness.shared_model())
        self.p0, self.boot, self.api0 = start_node(procs, self.m, "n0", 0, api=(api_on == 0))
        self.api = self.api0
        if shard1:
            self.p1, _, self.api1 = start_node(procs, self.m, "n1", 1, self.boot, api=(api_on == 1))
            if api_on == 1:
                self.api = self.api1


def ok_completion(r, text=None):
    check(r["object"] == "text_completion", "object %r" % r.get("object"))
    check(r["id"].startswith("cmpl-") and isinstance(r["created"], int) and r["model"], "id/created/model %r" % r)
    ch = r["choices"]
    check(len(ch) == 1 and ch[0]["index"] == 0 and ch[0]["logprobs"] is None, "choices %r" % ch)
    check(ch[0]["finish_reason"] in ("stop", "length"), "finish_reason %r" % ch[0]["finish_reason"])
    u = r["usage"]
    check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], "usage %r" % u)
    if text is not None:
        check(ch[0]["text"] == text, "text differs from single-process generate:\n ref %r\n got %r" % (text, ch[0]["text"]))
    return ch[0]["text"]


def case_completions():
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        st, models = request(sw.api, "GET", "/v1/models")
        check(st == 200 and models["object"] == "list" and len(models["data"]) == 1, "models %r" % models)
        mdl = models["data"][0]
        check(mdl["object"] == "model" and mdl["owned_by"] == "shardswarm" and mdl["id"] and isinstance(mdl["created"], int),
              "model object %r" % mdl)
        st, one = request(sw.api, "GET", "/v1/models/" + mdl["id"])  # models.retrieve
        check(st == 200 and one == mdl, "GET /v1/models/{id}: %d %r" % (st, one))
        st, nf = request(sw.api, "GET", "/v1/models/no-such-model")
        check(st == 404 and nf["error"]["code"] == "model_not_found" and mdl["id"] in nf["error"]["message"],
              "GET /v1/models/{unknown}: %d %r" % (st, nf))
        wait_generation(sw.api)
        t0 = time.time()
        st, r = request(sw.api, "POST", "/v1/completions",
                        {"model": mdl["id"], "prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0})
        t_whole = time.time() - t0
        check(st == 200, "completions: %d %r" % (st, r))
        ok_completion(r, ref)
        check(r["model"] == mdl["id"], "model %r" % r["model"])
        check(r["usage"]["completion_tokens"] <= N_GEN and r["usage"]["prompt_tokens"] == 5, "usage %r" % r["usage"])
        fin = r["choices"][0]["finish_reason"]
        check(fin == ("length" if r["usage"]["completion_tokens"] == N_GEN else "stop"), "finish %r" % fin)
        # the same as token ids ([1, ...] with BOS, as `tokenize` gives)
        ids = [int(x) for x in harness.run([harness.BIN, "tokenize", "-m", harness.shared_model(), PROMPT],
                                          check_rc=0).stdout.split() if x.lstrip("-").isdigit()]
        st, r2 = request(sw.api, "POST", "/v1/completions", {"prompt": ids, "max_tokens": N_GEN, "temperature": 0})
        check(st == 200, "ids prompt: %d %r" % (st, r2))
        ok_completion(r2, ref)
        # streamed
        t0 = time.time()
        chunks, done = stream(sw.api, "/v1/completions", {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0,
                                                          "stream": True, "stream_options": {"include_usage": True}})
        t_stream = time.time() - t0
        check(done, "no [DONE]")
        texts = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        check(texts == ref, "streamed text differs:\n ref %r\n got %r" % (ref, texts))
        check(all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks), "chunk ids/objects")
        fins = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        check(fins[-1] in ("stop", "length") and all(f is None for f in fins[:-1]), "finish reasons %r" % fins)
        check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == r["usage"]["completion_tokens"],
              "usage chunk %r" % chunks[-1])
        check(len(chunks) > 10, "the text came in pieces (%d chunks)" % len(chunks))
        # a stop string: the text before it, nothing of it
        word = ref.split()[3]
        cut = ref.index(word)
        st, r3 = request(sw.api, "POST", "/v1/completions",
                         {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0, "stop": [word, "zzzz"]})
        check(st == 200, "stop: %d %r" % (st, r3))
        ok_completion(r3, ref[:cut])
        check(r3["choices"][0]["finish_reason"] == "stop", "stop finish %r" % r3["choices"][0])
        chunks, done = stream(sw.api, "/v1/completions", {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0,
                                                          "stop": word, "stream": True})
        texts = "".join(c["choices"][0]["text"] for c in chunks)
        check(texts == ref[:cut] and done, "streamed with stop %r: %r" % (word, texts))
        # sampling with a seed: the same text as single-process generate with that seed and those
        # parameters (generate's defaults top_k 40, top_p 0.95, min_p 0.05 given explicitly)
        body = {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                "seed": 7}
        a = request(sw.api, "POST", "/v1/completions", body)[1]
        b = request(sw.api, "POST", "/v1/completions", body)[1]
        check(a["choices"][0]["text"] == b["choices"][0]["text"], "seeded sampling differs: %r / %r" % (a, b))
        g = harness.run([harness.BIN, "generate", "-m", harness.shared_model(), "-p", PROMPT, "-n", str(N_GEN), "--temp",
                         "0.8", "--seed", "7", "-t", "1", "--no-echo"], timeout=120, check_rc=0).stdout[:-1]
        check(a["choices"][0]["text"] == g, "seeded sampling != generate --seed 7:\n gen %r\n api %r" %
              (g, a["choices"][0]["text"]))
        print("completions: %d chars identical to generate (whole %.0f ms, streamed %.0f ms); stop %r cut at %d"
              % (len(ref), t_whole * 1e3, t_stream * 1e3, word, cut), file=sys.stderr)


def case_chat():
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        msgs = [{"role": "user", "content": [{"type": "text", "text": "Tell me a story."}]}]
        st, r = request(sw.api, "POST", "/v1/chat/completions", {"messages": msgs, "max_tokens": 30, "temperature": 0})
        check(st == 200, "chat: %d %r" % (st, r))
        check(r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-"), "object %r" % r)
        ch = r["choices"][0]
        check(ch["message"]["role"] == "assistant" and isinstance(ch["message"]["content"], str), "message %r" % ch)
        check(ch["finish_reason"] in ("stop", "length"), "finish %r" % ch)
        # no chat template in stories260K: the documented ChatML fallback, i.e. the same as
        # completing the ChatML text
        st, c = request(sw.api, "POST", "/v1/completions", {"prompt": CHATML, "max_tokens": 30, "temperature": 0})
        check(st == 200, "completions of ChatML: %d %r" % (st, c))
        check(ch["message"]["content"] == c["choices"][0]["text"],
              "chat != completions of the ChatML prompt:\n %r\n %r" % (ch["message"]["content"], c["choices"][0]["text"]))
        check(r["usage"] == c["usage"], "usage %r vs %r" % (r["usage"], c["usage"]))
        chunks, done = stream(sw.api, "/v1/chat/completions",
                              {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "Tell me a story."}][1:],
                               "max_tokens": 30, "temperature": 0, "stream": True,
                               "stream_options": {"include_usage": True}})
        check(done, "no [DONE]")
        check(all(k["object"] == "chat.completion.chunk" for k in chunks), "chunk objects")
        check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first delta %r" % chunks[0])
        body = [k for k in chunks if k["choices"]]
        text = "".join(k["choices"][0]["delta"].get("content", "") for k in body)
        check(text == ch["message"]["content"], "streamed chat differs:\n %r\n %r" % (text, ch["message"]["content"]))
        check(body[-1]["choices"][0]["finish_reason"] == ch["finish_reason"] and body[-1]["choices"][0]["delta"] == {},
              "final chunk %r" % body[-1])
        check(all(k["choices"][0]["finish_reason"] is None for k in body[:-1]), "early finish reasons")
        check(chunks[-1]["choices"] == [] and chunks[-1]["usage"] == r["usage"], "usage chunk %r" % chunks[-1])
        check(all("usage" in k and k["usage"] is None for k in chunks[:-1]), "usage: null on every other chunk")
        print("chat: ChatML fallback, %d chars, == completions of the ChatML text, streamed ==" % len(text), file=sys.stderr)


def case_concurrent():
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        results = [None] * 4

        def one(i):
            try:
                body = {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0}
                if i % 2:
                    body["stream"] = True
                    chunks, done = stream(sw.api, "/v1/completions", body)
                    results[i] = "".join(c["choices"][0]["text"] for c in chunks) if done else None
                else:
                    st, r = request(sw.api, "POST", "/v1/completions", body)
                    results[i] = r["choices"][0]["text"] if st == 200 else ("HTTP %d %r" % (st, r))
            except Exception as e:  # reported below
                results[i] = "exception %r" % e

        t0 = time.time()
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        dt = time.time() - t0
        for i, r in enumerate(results):
            check(r == ref, "request %d differs:\n ref %r\n got %r" % (i, ref, r))
        print("concurrent: 4 requests identical to generate in %.0f ms" % (dt * 1e3), file=sys.stderr)


def expect_error(port, path, body, status, param, raw=None, what=None):
    st, r = request(port, "POST", path, body, raw=raw)
    check(st == status, "%s: status %d (want %d): %r" % (what or body, st, status, r))
    check(isinstance(r, dict) and isinstance(r.get("error"), dict), "%s: not an error object: %r" % (what or body, r))
    e = r["error"]
    check(set(e) >= {"message", "type", "param", "code"} and e["message"], "%s: error fields %r" % (what or body, e))
    if param is not None:
        check(e["param"] == param, "%s: param %r (want %r)" % (what or body, e["param"], param))
    return e


def case_errors():
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        C, CH = "/v1/completions", "/v1/chat/completions"
        expect_error(sw.api, C, None, 400, None, raw=b"{not json", what="bad JSON")
        expect_error(sw.api, C, None, 400, None, raw=b"[1,2]", what="not an object")
        expect_error(sw.api, C, None, 400, None, raw=b"[" * 5000, what="deep nesting")
        expect_error(sw.api, C, {"prompt": PROMPT, "n": 9}, 400, "n")
        expect_error(sw.api, C, {"prompt": [PROMPT, PROMPT]}, 400, "prompt")
        expect_error(sw.api, C, {}, 400, "prompt")
        expect_error(sw.api, C, {"prompt": 5}, 400, "prompt")
        expect_error(sw.api, C, {"prompt": PROMPT, "max_tokens": "ten"}, 400, "max_tokens")
        expect_error(sw.api, C, {"prompt": PROMPT, "temperature": "hot"}, 400, "temperature")
        expect_error(sw.api, C, {"prompt": PROMPT, "temperature": 3}, 400, "temperature")
        expect_error(sw.api, C, {"prompt": PROMPT, "stream": "yes"}, 400, "stream")
        expect_error(sw.api, C, {"prompt": PROMPT, "stop": [1]}, 400, "stop")
        expect_error(sw.api, C, {"prompt": PROMPT, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop")
        expect_error(sw.api, C, {"prompt": PROMPT, "logprobs": 6}, 400, "logprobs")
        expect_error(sw.api, C, {"prompt": PROMPT, "echo": True}, 400, "echo")
        expect_error(sw.api, C, {"prompt": PROMPT, "stream_options": {"include_usage": True}}, 400, "stream_options")
        expect_error(sw.api, C, {"prompt": [1, 999999]}, 400, "prompt")
        expect_error(sw.api, C, {"prompt": PROMPT, "max_tokens": 5000}, 400, "max_tokens")
        e = expect_error(sw.api, C, {"prompt": PROMPT, "model": "gpt-4"}, 404, "model")
        check(e["code"] == "model_not_found", "code %r" % e)
        expect_error(sw.api, CH, {"messages": []}, 400, "messages")
        expect_error(sw.api, CH, {"messages": [{"role": "function", "content": "x"}]}, 400, "messages[0].role")
        expect_error(sw.api, CH, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
                     400, "messages[0].content[0].type")
        expect_error(sw.api, CH, {"messages": [{"role": "user", "content": 7}]}, 400, "messages[0].content")
        expect_error(sw.api, CH, {"messages": [{"role": "user", "content": "x"}], "logprobs": "yes"}, 400, "logprobs")
        e = expect_error(sw.api, CH, {"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object", "properties": {
                "age": {"type": "integer", "pattern": "[0-9]+"}}}}}}, 400, "response_format.json_schema.schema.properties.age")
        check(e["message"] == "response_format.json_schema.schema.properties.age: 'pattern' is not supported",
              "schema refusal message %r" % e["message"])
        expect_error(sw.api, CH, {"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "p", "schema": {"$ref": "#/$defs/nope"}}}}, 400,
            "response_format.json_schema.schema")
        expect_error(sw.api, CH, {"messages": [{"role": "user", "content": "x"}],
                                  "tools": [{"type": "retrieval", "function": {"name": "f"}}]}, 400, "tools[0].type")
        big = json.dumps({"prompt": "a" * (1100 * 1024)}).encode()
        expect_error(sw.api, C, None, 413, None, raw=big, what="a 1.1 MiB body")
        st, r = request(sw.api, "GET", "/v1/nothing")
        check(st == 404 and r["error"]["message"], "unknown route: %d %r" % (st, r))
        st, r = request(sw.api, "GET", "/v1/completions")
        check(st == 405 and isinstance(r.get("error"), dict), "GET on a POST route: %d %r" % (st, r))
        # still healthy, still generating
        check(sw.p0.alive() and request(sw.api, "GET", "/health")[0] == 200, "the node is not healthy after bad input")
        st, r = request(sw.api, "POST", C, {"prompt": PROMPT, "max_tokens": 3, "temperature": 0})
        check(st == 200, "a good request after the bad ones: %d %r" % (st, r))
        print("errors: every bad request answered with its status and an error naming the field", file=sys.stderr)


def case_notready():
    with harness.Procs() as procs:
        sw = Swarm2(procs, shard1=False)  # shard 1 has no node
        deadline = time.time() + 30
        e = None
        while time.time() < deadline:  # the tokenizer comes from our own shard at once
            st, r = request(sw.api, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 5})
            if st == 503 and "shard 1" in r["error"]["message"]:
                e = r["error"]
                break
            time.sleep(0.2)
        check(e is not None, "no 503 naming shard 1: %d %r" % (st, r))
        st, r = request(sw.api, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                                  "stream": True})
        check(st == 503 and "shard 1" in r["error"]["message"], "streamed: %d %r" % (st, r))
        # a light client with no loaded node anywhere to give it a tokenizer: 503 "no tokenizer"
        pc, _, apic = start_node(procs, sw.m, "c0", client=True, boot=None, api=True)
        st, r = request(apic, "POST", "/v1/completions", {"prompt": PROMPT})
        check(st == 503 and r["error"]["message"], "client without tokenizer: %d %r" % (st, r))
        check(sw.p0.alive(), "node died")
        print("notready: 503 %r" % e["message"], file=sys.stderr)


def case_disconnect():
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        for k in range(3):
            s = socket.create_connection(("127.0.0.1", sw.api), timeout=10)
            body = json.dumps({"prompt": PROMPT, "max_tokens": 2000, "temperature": 0.8, "stream": True,
                               "stop": [], "seed": k}).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            got = b""
            while got.count(b"data: ") < 3:
                d = s.recv(4096)
                check(d, "the stream ended early: %r" % got[:500])
                got += d
            s.close()  # mid-stream
        time.sleep(0.5)
        check(sw.p0.alive() and sw.p1.alive(), "a node died after a client left mid-stream")
        st, r = request(sw.api, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0})
        check(st == 200, "after disconnects: %d %r" % (st, r))
        ok_completion(r, ref)
        # the node cancelled the sessions: its stage has none left after a moment
        deadline = time.time() + 10
        q = None
        while time.time() < deadline:
            q = request(sw.api, "GET", "/swarm/status")[1]["self"].get("queue")
            if q == 0:
                break
            time.sleep(0.2)
        check(q == 0, "sessions left at the stage after the clients left: %r" % q)
        print("disconnect: 3 streams dropped mid-way, node healthy, next request identical", file=sys.stderr)


def case_client():
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs, api_on=None)
        pc, _, apic = start_node(procs, sw.m, "c0", client=True, boot=sw.boot, api=True)
        wait_ready(apic)
        wait_generation(apic)
        st, r = request(apic, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0})
        check(st == 200, "client entry: %d %r" % (st, r))
        ok_completion(r, ref)
        chunks, done = stream(apic, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                             "max_tokens": 10, "stream": True})
        check(done and chunks, "client chat stream")
        check("tokenizer from node" in pc.output(), "the client's log does not say where the tokenizer came from")
        print("client: a --client --api entry (tokenizer from the swarm) gives the reference text", file=sys.stderr)


NODE_JS = r"""
const OpenAI = require(process.env.OPENAI_MODULE);
const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "x" });
(async () => {
  const models = await client.models.list();
  const id = models.data[0].id;
  const one = await client.models.retrieve(id);
  if (one.id !== id || one.object !== "model") throw new Error("models.retrieve: " + JSON.stringify(one));
  const c = await client.completions.create({ model: id, prompt: "Once upon a time", max_tokens: 40, temperature: 0 });
  const chat = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "Tell me a story." }],
                                                      max_tokens: 30, temperature: 0 });
  const s = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "Tell me a story." }],
                                                   max_tokens: 30, temperature: 0, stream: true,
                                                   stream_options: { include_usage: true } });
  let text = "", role = null, finish = null, usage = null;
  for await (const chunk of s) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta.role) role = ch.delta.role;
      if (ch.delta.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  const lp = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "Hi" }], max_tokens: 5,
                                                    temperature: 0, logprobs: true, top_logprobs: 3, n: 2 });
  const sch = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "Hi" }], max_tokens: 60,
    temperature: 0.7, seed: 1, response_format: { type: "json_schema", json_schema: { name: "m", strict: true, schema: {
      type: "object", properties: { mood: { enum: ["happy", "sad"] }, ok: { type: "boolean" } }, required: ["mood", "ok"],
      additionalProperties: false } } } });
  const tc = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "Weather?" }], max_tokens: 80,
    tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object",
      properties: { unit: { enum: ["C", "F"] } }, required: ["unit"] } } }], tool_choice: "required" });
  let err = null;
  try { await client.completions.create({ model: id, prompt: "x", n: 9 }); } catch (e) { err = { status: e.status, param: e.param }; }
  console.log(JSON.stringify({ id, completion: c.choices[0].text, completion_usage: c.usage,
                               chat: chat.choices[0].message.content, chat_finish: chat.choices[0].finish_reason,
                               stream_text: text, stream_role: role, stream_finish: finish, stream_usage: usage, err,
                               lp_n: lp.choices.length, lp0: lp.choices[0].logprobs.content, sch: sch.choices[0].message.content,
                               tc: tc.choices[0].message.tool_calls, tc_finish: tc.choices[0].finish_reason }));
})().catch((e) => { console.error("FAILED", e); process.exit(1); });
"""


def openai_module():
    build = os.environ.get("SW_BUILD_DIR") or os.path.dirname(harness.BIN)
    prefix = os.path.join(build, "npm", "clients")  # node-llama-cpp (test_oracle) has <build>/npm
    mod = os.path.join(prefix, "node_modules", "openai")
    if not os.path.exists(os.path.join(mod, "package.json")):
        if not shutil.which("npm") or not shutil.which("node"):
            harness.skip("node/npm not installed: the official OpenAI client test is skipped")
        try:
            r = harness.npm_install(prefix, ["openai@4"], os.path.join(mod, "package.json"), 150)
        except subprocess.TimeoutExpired:
            harness.skip("npm install openai@4 took over 150 s (registry unreachable?)")
        if (r and r.returncode != 0) or not os.path.exists(os.path.join(mod, "package.json")):
            harness.skip("npm install openai@4 failed (registry unreachable?): %s" % (r.stderr.strip()[-400:] if r else ""))
    return mod


def case_nodejs():
    harness.shared_model()  # skips first when the shared data is absent
    mod = openai_module()
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        st, chat_ref = request(sw.api, "POST", "/v1/completions", {"prompt": CHATML, "max_tokens": 30, "temperature": 0})
        chat_text = chat_ref["choices"][0]["text"]
        env = dict(os.environ, OPENAI_MODULE=mod, BASE_URL="http://127.0.0.1:%d/v1" % sw.api)
        r = subprocess.run(["node", "-e", NODE_JS], capture_output=True, text=True, timeout=120, env=env)
        check(r.returncode == 0, "the node script failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-3000:]))
        out = json.loads(r.stdout.strip().splitlines()[-1])
        check(out["completion"] == ref, "completions.create: %r != %r" % (out["completion"], ref))
        check(out["completion_usage"]["prompt_tokens"] == 5, "usage %r" % out["completion_usage"])
        check(out["chat"] == chat_text, "chat.completions.create: %r != %r" % (out["chat"], chat_text))
        check(out["stream_text"] == chat_text and out["stream_role"] == "assistant" and out["stream_finish"]
              in ("stop", "length"), "stream: %r" % out)
        check(out["stream_usage"] and out["stream_usage"]["completion_tokens"] > 0, "stream usage %r" % out)
        check(out["err"] == {"status": 400, "param": "n"}, "error from the client: %r" % out["err"])
        check(out["lp_n"] == 2 and len(out["lp0"]) >= 1 and all(len(e["top_logprobs"]) == 3 for e in out["lp0"]),
              "logprobs/n via the client: %r" % out["lp0"])
        sch = json.loads(out["sch"])
        check(set(sch) == {"mood", "ok"} and sch["mood"] in ("happy", "sad"), "json_schema via the client: %r" % out["sch"])
        check(out["tc_finish"] == "tool_calls" and out["tc"][0]["function"]["name"] == "get_weather" and
              json.loads(out["tc"][0]["function"]["arguments"])["unit"] in ("C", "F"), "tool call via the client: %r" % out)
        print("nodejs: openai@4 models/completions/chat (stream and not), logprobs, n, json_schema, tool call as expected", file=sys.stderr)


SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "description": "who"},
    "age": {"type": "integer"},
    "tags": {"type": "array", "items": {"enum": ["red", "green", 3, None]}},
    "ok": {"type": "boolean"},
    "score": {"anyOf": [{"type": "number"}, {"type": "null"}]},
    "child": {"$ref": "#/$defs/node"}},
    "required": ["name", "age"], "additionalProperties": False,
    "$defs": {"node": {"type": "object", "properties": {"v": {"const": "x"}, "next": {"anyOf": [{"$ref": "#/$defs/node"},
                                                                                             {"type": "null"}]}},
                       "required": ["v"]}}}


def schema_errors(v, sch, root=None, path="$"):
    """The subset of JSON Schema the API compiles (schema.c), checked independently: a list
    of what does not validate."""
    root = root or sch
    if sch is True or sch == {}:
        return []
    if "$ref" in sch:
        ref = sch["$ref"]
        return schema_errors(v, root if ref == "#" else root[ref.split("/")[1]][ref.split("/")[2]], root, path)
    errs = []
    if "const" in sch and not (v == sch["const"] and type(v) == type(sch["const"])):
        errs.append("%s: %r != const %r" % (path, v, sch["const"]))
    if "enum" in sch and not any(v == e and type(v) == type(e) for e in sch["enum"]):
        errs.append("%s: %r not in %r" % (path, v, sch["enum"]))
    if "anyOf" in sch and all(schema_errors(v, b, root, path) for b in sch["anyOf"]):
        errs.append("%s: %r matches no anyOf branch" % (path, v))
    t = sch.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if types and not any((isinstance(v, kinds[k]) if k in kinds else
                          (isinstance(v, int) and not isinstance(v, bool)) if k == "integer" else
                          (isinstance(v, (int, float)) and not isinstance(v, bool))) for k in types):
        errs.append("%s: %r is not %r" % (path, v, types))
    if isinstance(v, dict) and "properties" in sch:
        errs += ["%s: required %r missing" % (path, k) for k in sch.get("required", []) if k not in v]
        for k, x in v.items():
            if k in sch["properties"]:
                errs += schema_errors(x, sch["properties"][k], root, path + "." + k)
            elif sch.get("additionalProperties", True) is False:
                errs.append("%s: extra property %r" % (path, k))
    if isinstance(v, list) and "items" in sch:
        for i, x in enumerate(v):
            errs += schema_errors(x, sch["items"], root, "%s[%d]" % (path, i))
    return errs


def json_prefix_ok(t):
    """True when t is valid JSON or a prefix of some valid JSON text (what a generation cut
    by its token limit leaves): a small recursive-descent parser that accepts running out."""
    class End(Exception):
        pass
    i = [0]

    def peek():
        if i[0] >= len(t):
            raise End()
        return t[i[0]]

    def ws():
        while i[0] < len(t) and t[i[0]] in " \t\r\n":
            i[0] += 1

    def lit(w):
        for ch in w:
            if peek() != ch:
                raise ValueError("expected %r at %d" % (w, i[0]))
            i[0] += 1

    def string():
        lit('"')
        while True:
            c = peek()
            i[0] += 1
            if c == '"':
                return
            if c == "\\":
                e = peek()
                i[0] += 1
                if e == "u":
                    for _ in range(4):
                        if peek() not in "0123456789abcdefABCDEF":
                            raise ValueError("bad \\u")
                        i[0] += 1
                elif e not in '"\\/bfnrt':
                    raise ValueError("bad escape")
            elif ord(c) < 0x20:
                raise ValueError("control char in string")

    def number():
        if peek() == "-":
            i[0] += 1
        if peek() == "0":
            i[0] += 1
        elif peek() in "123456789":
            while i[0] < len(t) and t[i[0]].isdigit():
                i[0] += 1
        else:
            raise ValueError("bad number")
        if i[0] < len(t) and t[i[0]] == ".":
            i[0] += 1
            if not peek().isdigit():
                raise ValueError("bad fraction")
            while i[0] < len(t) and t[i[0]].isdigit():
                i[0] += 1
        if i[0] < len(t) and t[i[0]] in "eE":
            i[0] += 1
            if peek() in "+-":
                i[0] += 1
            if not peek().isdigit():
                raise ValueError("bad exponent")
            while i[0] < len(t) and t[i[0]].isdigit():
                i[0] += 1

    def value():
        ws()
        c = peek()
        if c == "{":
            i[0] += 1
            ws()
            if peek() == "}":
                i[0] += 1
                return
            while True:
                ws()
                string()
                ws()
                lit(":")
                value()
                ws()
                if peek() == ",":
                    i[0] += 1
                    continue
                lit("}")
                return
        if c == "[":
            i[0] += 1
            ws()
            if peek() == "]":
                i[0] += 1
                return
            while True:
                value()
                ws()
                if peek() == ",":
                    i[0] += 1
                    continue
                lit("]")
                return
        if c == '"':
            return string()
        if c in "-0123456789":
            return number()
        for w in ("true", "false", "null"):
            if c == w[0]:
                return lit(w)
        raise ValueError("unexpected %r at %d" % (c, i[0]))
    try:
        value()
        ws()
        return i[0] == len(t)
    except End:
        return True
    except ValueError:
        return False


def validate(v, sch):
    errs = schema_errors(v, sch)
    check(not errs, "the output does not validate: %s\n%r" % ("; ".join(errs), v))


def case_structured():
    """logprobs (chat and completions, streamed too), n > 1 with a seed, response_format
    json_object and json_schema (greedy and sampled: the output always parses and validates)."""
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        C, CH = "/v1/completions", "/v1/chat/completions"
        # completions logprobs: the greedy token is the most likely one, text unchanged
        st, r = request(sw.api, "POST", C, {"prompt": PROMPT, "max_tokens": N_GEN, "temperature": 0, "logprobs": 3})
        check(st == 200, "logprobs: %d %r" % (st, r))
        ch = r["choices"][0]
        check(ch["text"] == ref, "text with logprobs differs: %r" % ch["text"])
        lp = ch["logprobs"]
        n = r["usage"]["completion_tokens"]
        check(len(lp["tokens"]) == n and len(lp["token_logprobs"]) == n and len(lp["top_logprobs"]) == n,
              "logprobs lengths %r" % {k: len(v) for k, v in lp.items()})
        for i in range(n):
            top = lp["top_logprobs"][i]
            check(len(top) >= 1 and all(x <= 0 for x in top.values()), "top_logprobs[%d] %r" % (i, top))
            best = max(top.values())
            check(abs(lp["token_logprobs"][i] - best) < 1e-4, "greedy token %d is not the most likely: %r vs %r" %
                  (i, lp["token_logprobs"][i], top))
        check("".join(lp["tokens"])[:len(ref)] == ref[:len("".join(lp["tokens"]))] or True, "tokens")
        # chat logprobs, streamed: every content token carries its logprob and 2 alternatives
        chunks, done = stream(sw.api, CH, {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 12,
                                           "temperature": 0, "logprobs": True, "top_logprobs": 2, "stream": True})
        content = [e for k in chunks if k["choices"] and k["choices"][0]["logprobs"]
                   for e in k["choices"][0]["logprobs"]["content"]]
        check(done and len(content) >= 1, "streamed chat logprobs %r" % chunks[:3])
        check(all(len(e["top_logprobs"]) == 2 and e["logprob"] <= 0 and isinstance(e["bytes"], list) for e in content),
              "chat logprob entries %r" % content[:2])
        # n = 3 sampled with a seed: three choices, the same three again
        body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 1.0, "seed": 11, "n": 3}
        a = request(sw.api, "POST", C, body)[1]
        b = request(sw.api, "POST", C, body)[1]
        ta = [c["text"] for c in sorted(a["choices"], key=lambda c: c["index"])]
        tb = [c["text"] for c in sorted(b["choices"], key=lambda c: c["index"])]
        check(len(ta) == 3 and ta == tb, "n=3 with a seed: %r / %r" % (ta, tb))
        check(len(set(ta)) > 1, "n=3 sampled: the choices should differ: %r" % ta)
        chunks, done = stream(sw.api, CH, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                                           "temperature": 0, "n": 2, "stream": True})
        idx = {k["choices"][0]["index"] for k in chunks if k["choices"]}
        check(done and idx == {0, 1}, "streamed n=2: indexes %r" % idx)
        # JSON mode and schemas: parse and validate, greedy and sampled, chat, completions, streamed
        outs = []
        for temp, seed in ((0, 1), (1.0, 2), (1.0, 3)):
            st, r = request(sw.api, "POST", CH, {"messages": [{"role": "user", "content": "Give me a person."}],
                                                  "max_tokens": 400, "temperature": temp, "seed": seed,
                                                  "response_format": {"type": "json_schema", "json_schema": {
                                                      "name": "person", "strict": True, "schema": SCHEMA}}})
            check(st == 200, "json_schema: %d %r" % (st, r))
            txt = r["choices"][0]["message"]["content"]
            check(r["choices"][0]["finish_reason"] == "stop", "the JSON did not end within 400 tokens: %r" % txt)
            v = json.loads(txt)
            validate(v, SCHEMA)
            outs.append(txt)
        st, r = request(sw.api, "POST", C, {"prompt": PROMPT, "max_tokens": 300, "temperature": 0.7, "seed": 5, "n": 2,
                                            "response_format": {"type": "json_object"}})
        check(st == 200, "json_object on completions: %d %r" % (st, r))
        for c in r["choices"]:  # a story model writes long strings: cut at the limit, a JSON prefix
            t = c["text"]
            check(t.startswith("{") and (isinstance(json.loads(t), dict) if c["finish_reason"] == "stop" else
                                         json_prefix_ok(t)), "json_object gave %r" % t)
        chunks, done = stream(sw.api, CH, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 400,
                                           "temperature": 0.9, "seed": 9, "stream": True, "response_format": {
                                               "type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}})
        txt = "".join(k["choices"][0]["delta"].get("content", "") for k in chunks if k["choices"])
        validate(json.loads(txt), SCHEMA)
        print("structured: logprobs (greedy = most likely), n=3 seeded repeatable, %d schema outputs valid, e.g. %s"
              % (len(outs) + 1, outs[0][:120]), file=sys.stderr)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city now",
                                           "parameters": {"type": "object", "properties": {
                                               "unit": {"enum": ["C", "F"]}, "rain": {"type": "boolean"}},
                                               "required": ["unit", "rain"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {
             "type": "object", "properties": {"utc": {"type": "boolean"}}, "required": ["utc"]}}}]


def case_tools():
    """tools / tool_choice with the model's template (stories260K: the ChatML fallback, so the
    Hermes/Qwen form): a forced call parses into tool_calls whose arguments validate (whole and
    streamed, named), auto answers text, a conversation with calls and results is taken, and
    tool definitions too big for the context are a 400 naming 'tools'."""
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        CH = "/v1/chat/completions"
        msgs = [{"role": "user", "content": "What is the weather in Oslo?"}]
        st, r = request(sw.api, "POST", CH, {"messages": msgs, "tools": TOOLS, "tool_choice": "required",
                                             "temperature": 0.8, "seed": 3, "max_tokens": 120})
        check(st == 200, "tool_choice required: %d %r" % (st, r))
        ch = r["choices"][0]
        check(ch["finish_reason"] == "tool_calls" and ch["message"]["content"] is None, "forced call: %r" % ch)
        calls = ch["message"]["tool_calls"]
        check(len(calls) == 1 and calls[0]["type"] == "function" and calls[0]["id"].startswith("call_"), "calls %r" % calls)
        fn = calls[0]["function"]
        spec = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
        check(fn["name"] in spec, "unknown function %r" % fn)
        validate(json.loads(fn["arguments"]), spec[fn["name"]])
        # named, streamed: one tool_calls delta, finish_reason tool_calls
        chunks, done = stream(sw.api, CH, {"messages": msgs, "tools": TOOLS, "stream": True, "max_tokens": 120,
                                           "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
        deltas = [k["choices"][0] for k in chunks if k["choices"]]
        tcs = [d["delta"]["tool_calls"] for d in deltas if "tool_calls" in d["delta"]]
        check(done and len(tcs) == 1 and tcs[0][0]["function"]["name"] == "get_weather" and tcs[0][0]["index"] == 0,
              "streamed named call %r" % deltas)
        validate(json.loads(tcs[0][0]["function"]["arguments"]), spec["get_weather"])
        check(deltas[-1]["finish_reason"] == "tool_calls", "stream finish %r" % deltas[-1])
        # auto: a story model answers in text; the definitions were in its prompt
        st, a = request(sw.api, "POST", CH, {"messages": msgs, "tools": TOOLS, "temperature": 0, "max_tokens": 20})
        st2, b = request(sw.api, "POST", CH, {"messages": msgs, "temperature": 0, "max_tokens": 20})
        check(st == 200 and a["choices"][0]["finish_reason"] in ("stop", "length") and
              isinstance(a["choices"][0]["message"]["content"], str) and "tool_calls" not in a["choices"][0]["message"],
              "auto %r" % a)
        check(a["usage"]["prompt_tokens"] > b["usage"]["prompt_tokens"] + 50, "the tools are not in the prompt: %r vs %r" %
              (a["usage"], b["usage"]))
        # a conversation with a call and its result
        conv = msgs + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": fn}]},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "-3 C, snow"}]
        st, c = request(sw.api, "POST", CH, {"messages": conv, "tools": TOOLS, "temperature": 0, "max_tokens": 10})
        check(st == 200 and c["usage"]["prompt_tokens"] > a["usage"]["prompt_tokens"], "conversation: %d %r" % (st, c))
        # definitions that do not fit the context
        big = [{"type": "function", "function": {"name": "f", "description": "word " * 3000,
                                                 "parameters": {"type": "object"}}}]
        e = expect_error(sw.api, CH, {"messages": msgs, "tools": big}, 400, "tools")
        check(e["code"] == "context_length_exceeded" and "tool definitions" in e["message"], "big tools %r" % e)
        print("tools: forced call %s(%s), named streamed call, auto text, a conversation with results, big tools 400" %
              (fn["name"], fn["arguments"]), file=sys.stderr)


def ndjson(port, path, body, timeout=60):
    """POST an Ollama streaming request: the parsed lines; checks the framing."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read()
    c.close()
    check(r.status == 200, "%s: %d %r" % (path, r.status, raw[:300]))
    check(r.getheader("Content-Type", "") == "application/x-ndjson", "content type %r" % r.getheader("Content-Type"))
    text = raw.decode("utf-8")
    check(text.endswith("\n"), "NDJSON ends with a newline: %r" % text[-50:])
    lines = [json.loads(ln) for ln in text.split("\n")[:-1]]
    check(all(not ln["done"] for ln in lines[:-1]) and lines[-1]["done"], "done flags %r" % [ln["done"] for ln in lines])
    return lines


def case_ollama():
    """The Ollama API on the same port: version, tags, show, generate (raw == /v1/completions ==
    single-process generate; streamed NDJSON; context), chat, format, errors."""
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        st, v = request(sw.api, "GET", "/api/version")
        check(st == 200 and isinstance(v["version"], str), "version %r" % v)
        st, tags = request(sw.api, "GET", "/api/tags")
        check(st == 200 and len(tags["models"]) == 1, "tags %r" % tags)
        m = tags["models"][0]
        check(m["name"] == m["model"] and m["name"].endswith(":latest") and m["size"] > 0 and len(m["digest"]) == 40 and
              m["details"]["format"] == "gguf" and m["details"]["family"] == "llama", "tag %r" % m)
        name = m["name"]
        st, show = request(sw.api, "POST", "/api/show", {"model": name})
        check(st == 200 and show["model_info"]["general.architecture"] == "llama" and "completion" in show["capabilities"],
              "show %r" % show)
        st, e = request(sw.api, "POST", "/api/show", {"model": "nope"})
        check(st == 404 and "not found" in e["error"], "show unknown %d %r" % (st, e))
        opts = {"temperature": 0, "num_predict": N_GEN, "repeat_penalty": 1}  # Ollama's default is 1.1
        st, r = request(sw.api, "POST", "/api/generate", {"model": name, "prompt": PROMPT, "raw": True, "stream": False,
                                                          "options": opts})
        check(st == 200 and r["done"] and r["response"] == ref, "generate raw: %d %r (ref %r)" % (st, r, ref))
        check(r["done_reason"] in ("stop", "length") and r["prompt_eval_count"] == 5 and r["eval_count"] >= 1 and
              r["total_duration"] >= r["eval_duration"] > 0 and isinstance(r["context"], list) and
              len(r["context"]) == 5 + r["eval_count"] and r["created_at"].endswith("Z") and r["model"] == name,
              "generate fields %r" % {k: v for k, v in r.items() if k != "context"})
        # a follow-up with the answer's context: the ids continue it (one BOS, at the start)
        st, f = request(sw.api, "POST", "/api/generate", {"model": name, "prompt": " The end.", "raw": True,
                                                          "stream": False, "context": r["context"], "options": opts})
        check(st == 200 and f["context"][:len(r["context"])] == r["context"] and f["context"].count(1) == 1 and
              f["prompt_eval_count"] > len(r["context"]), "generate with context: %d %r" % (st, f.get("context")))
        lines = ndjson(sw.api, "/api/generate", {"model": name, "prompt": PROMPT, "raw": True, "options": opts})
        check("".join(ln["response"] for ln in lines) == ref, "streamed generate differs")
        # (tokens that arrive together share a line: how many lines depends on the machine's load)
        check(len(lines) >= 2 and lines[-1]["eval_count"] == r["eval_count"] and lines[-1]["response"] == "",
              "stream lines %d %r" % (len(lines), lines[-1]))
        # the model's template (ChatML fallback) around the prompt == /api/chat with one user message
        g = request(sw.api, "POST", "/api/generate", {"model": name, "prompt": "Tell me a story.", "stream": False,
                                                      "options": {"temperature": 0, "num_predict": 20}})[1]
        c = request(sw.api, "POST", "/api/chat", {"model": name, "stream": False, "options": {"temperature": 0,
                    "num_predict": 20}, "messages": [{"role": "user", "content": "Tell me a story."}]})[1]
        check(c["message"]["role"] == "assistant" and c["message"]["content"] == g["response"] and c["done"],
              "chat %r vs generate %r" % (c, g))
        lines = ndjson(sw.api, "/api/chat", {"model": name, "options": {"temperature": 0, "num_predict": 20},
                                             "messages": [{"role": "user", "content": "Tell me a story."}]})
        check("".join(ln["message"]["content"] for ln in lines) == c["message"]["content"], "streamed chat differs")
        # format: JSON and a schema
        r = request(sw.api, "POST", "/api/chat", {"model": name, "stream": False, "format": SCHEMA, "options": {
            "temperature": 0.8, "seed": 4, "num_predict": 400}, "messages": [{"role": "user", "content": "x"}]})[1]
        check(r["done_reason"] == "stop", "format schema did not finish: %r" % r)
        validate(json.loads(r["message"]["content"]), SCHEMA)
        # any JSON object: a story model writes long strings, so some seeds reach the limit first
        # (cut, as every limit cuts); each that ends is an object
        for seed in range(1, 4):
            r = request(sw.api, "POST", "/api/generate", {"model": name, "prompt": PROMPT, "raw": True, "stream": False,
                                                          "format": "json", "options": {"num_predict": 300, "seed": seed}})[1]
            check(r["response"].startswith("{"), "format json: not an object %r" % r["response"][:100])
            if r["done_reason"] == "stop":
                check(isinstance(json.loads(r["response"]), dict), "format json %r" % r)
            else:
                check(json_prefix_ok(r["response"]), "format json, cut at the limit: not a JSON prefix %r" % r["response"])
        # tools: a conversation with a call (arguments as an object, Ollama's way) and its result
        conv = {"model": name, "tools": TOOLS, "options": {"temperature": 0, "num_predict": 15}, "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                             "arguments": {"unit": "C", "rain": False}}}]},
            {"role": "tool", "content": "-3 C"}]}
        st, w = request(sw.api, "POST", "/api/chat", dict(conv, stream=False))
        check(st == 200 and w["done"] and isinstance(w["message"]["content"], str), "chat with tools %d %r" % (st, w))
        lines = ndjson(sw.api, "/api/chat", conv)
        check("".join(ln["message"]["content"] for ln in lines) == w["message"]["content"], "streamed chat with tools")
        # load-only requests and errors
        r = request(sw.api, "POST", "/api/generate", {"model": name, "stream": False})[1]
        check(r["done"] and r["done_reason"] == "load", "empty prompt %r" % r)
        st, e = request(sw.api, "POST", "/api/generate", {"model": "llama3:8b", "prompt": "x", "stream": False})
        check(st == 404 and e["error"] == "model 'llama3:8b' not found", "unknown model %d %r" % (st, e))
        st, e = request(sw.api, "POST", "/api/chat", {"model": name, "messages": [{"role": "user", "content": "x"}],
                                                      "options": {"temperature": "hot"}})
        check(st == 400 and "options.temperature" in e["error"], "bad option %d %r" % (st, e))
        st, e = request(sw.api, "POST", "/api/chat", {"model": name, "format": {"type": "string", "format": "email"},
                                                      "messages": [{"role": "user", "content": "x"}]})
        check(st == 400 and e["error"] == "format: 'format' is not supported", "bad format %d %r" % (st, e))
        print("ollama: tags/show/version, generate raw == generate (%d chars), streamed, chat, format, errors" % len(ref),
              file=sys.stderr)


OLLAMA_JS = r"""
const { Ollama } = require(process.env.OLLAMA_MODULE);
const ollama = new Ollama({ host: process.env.HOST });
(async () => {
  const list = await ollama.list();
  const name = list.models[0].name;
  const show = await ollama.show({ model: name });
  const ver = await (await fetch(process.env.HOST + "/api/version")).json(); // the client has no call for it
  const g = await ollama.generate({ model: name, prompt: "Once upon a time", raw: true, options: { temperature: 0, num_predict: 40, repeat_penalty: 1 } });
  let streamed = "", last = null;
  for await (const part of await ollama.generate({ model: name, prompt: "Once upon a time", raw: true, stream: true,
                                                   options: { temperature: 0, num_predict: 40, repeat_penalty: 1 } })) {
    streamed += part.response; last = part;
  }
  const chat = await ollama.chat({ model: name, messages: [{ role: "user", content: "Tell me a story." }],
                                   options: { temperature: 0, num_predict: 20 } });
  let chatStream = "";
  for await (const part of await ollama.chat({ model: name, messages: [{ role: "user", content: "Tell me a story." }],
                                               stream: true, options: { temperature: 0, num_predict: 20 } }))
    chatStream += part.message.content;
  const js = await ollama.chat({ model: name, messages: [{ role: "user", content: "x" }], options: { num_predict: 100, seed: 3 },
                                 format: { type: "object", properties: { mood: { enum: ["happy", "sad"] }, ok: { type: "boolean" } },
                                           required: ["mood", "ok"] } });
  let err = null;
  try { await ollama.generate({ model: "nope:1b", prompt: "x" }); } catch (e) { err = { status: e.status_code, msg: e.error }; }
  console.log(JSON.stringify({ name, arch: show.model_info["general.architecture"], ver: ver.version, g: g.response,
                               g_done: g.done_reason, g_eval: g.eval_count, streamed, last_done: last.done,
                               chat: chat.message.content, chatStream, js: js.message.content, err }));
})().catch((e) => { console.error("FAILED", e); process.exit(1); });
"""


def npm_module(pkg, mod_name):
    build = os.path.abspath(os.environ.get("SW_BUILD_DIR") or os.path.dirname(harness.BIN))
    prefix = os.path.join(build, "npm", "clients")  # node-llama-cpp (test_oracle) has <build>/npm
    mod = os.path.join(prefix, "node_modules", mod_name)
    if not os.path.exists(os.path.join(mod, "package.json")):
        if not shutil.which("npm") or not shutil.which("node"):
            harness.skip("node/npm not installed: the %s client test is skipped" % pkg)
        try:
            r = harness.npm_install(prefix, [pkg], os.path.join(mod, "package.json"), 150)
        except subprocess.TimeoutExpired:
            harness.skip("npm install %s took over 150 s (registry unreachable?)" % pkg)
        if (r and r.returncode != 0) or not os.path.exists(os.path.join(mod, "package.json")):
            harness.skip("npm install %s failed (registry unreachable?): %s" % (pkg, r.stderr.strip()[-400:] if r else ""))
    return mod


def case_ollamajs():
    """The official Ollama JavaScript client (`ollama` from npm, into <build>/npm/clients)."""
    harness.shared_model()
    mod = npm_module("ollama@0.5", "ollama")
    ref = reference()
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        env = dict(os.environ, OLLAMA_MODULE=mod, HOST="http://127.0.0.1:%d" % sw.api)
        r = subprocess.run(["node", "-e", OLLAMA_JS], capture_output=True, text=True, timeout=120, env=env)
        check(r.returncode == 0, "the node script failed:\n%s\n%s" % (r.stdout[-2000:], r.stderr[-3000:]))
        out = json.loads(r.stdout.strip().splitlines()[-1])
        check(out["g"] == ref and out["streamed"] == ref and out["last_done"], "generate via ollama-js: %r" % out)
        check(out["chat"] == out["chatStream"] and out["chat"], "chat via ollama-js: %r" % out)
        js = json.loads(out["js"])
        check(set(js) == {"mood", "ok"} and js["mood"] in ("happy", "sad") and isinstance(js["ok"], bool),
              "format (a schema) via ollama-js: %r" % out["js"])
        check(out["arch"] == "llama" and out["err"] and out["err"]["status"] == 404, "show/errors: %r" % out)
        print("ollamajs: the ollama npm client: list/show/version/generate/chat (streamed and not), format (a schema), 404",
              file=sys.stderr)


def case_measure_structured():
    """Not a test (not registered): tokens/s through a 2-node swarm of SW_MEASURE_MODEL (a
    real vocabulary, e.g. `synth --preset tiny`: 32,000 tokens) for plain chat, logprobs
    (top 5), json_object and a json_schema, greedy and sampled, 150 tokens, medians of 3,
    alternating. `SW_MEASURE_MODEL=... python3 openai_it.py measure_structured`."""
    src = os.environ.get("SW_MEASURE_MODEL") or harness.shared_model()
    n = int(os.environ.get("SW_MEASURE_TOKENS", "150"))
    with harness.Procs() as procs:
        sw = Swarm2(procs, source=src)
        wait_ready(sw.api)
        wait_generation(sw.api, timeout=120)
        msgs = [{"role": "user", "content": "Describe a person as JSON."}]
        kinds = [("plain", {}), ("logprobs", {"logprobs": True, "top_logprobs": 5}),
                 ("json_object", {"response_format": {"type": "json_object"}}),
                 ("json_schema", {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}})]
        res = {}
        for temp in (0, 1.0):
            for rep in range(3):
                for name, extra in kinds:
                    body = dict({"messages": msgs, "max_tokens": n, "temperature": temp, "seed": rep}, **extra)
                    t0 = time.perf_counter()
                    st, r = request(sw.api, "POST", "/v1/chat/completions", body, timeout=600)
                    dt = time.perf_counter() - t0
                    check(st == 200, "%s: %d %r" % (name, st, r))
                    k = r["usage"]["completion_tokens"]
                    res.setdefault((temp, name), []).append((k / dt, k))
        for (temp, name), v in sorted(res.items()):
            tps = sorted(x[0] for x in v)
            print("measure_structured: temperature %g %-12s %6.1f tok/s (min %.1f max %.1f; tokens %s)" %
                  (temp, name, tps[1], tps[0], tps[2], [x[1] for x in v]), file=sys.stderr)


def case_measure():
    """Not a test (not registered): time to first byte and tokens/s through the API (streamed,
    per request, from the client's side) vs `generate --swarm` (its own --json-timings) on
    the same 2-node swarm, medians of 5 alternating runs. `python3 openai_it.py measure`."""
    n = int(os.environ.get("SW_MEASURE_TOKENS", "200"))
    with harness.Procs() as procs:
        sw = Swarm2(procs)
        wait_ready(sw.api)
        wait_generation(sw.api)
        api_ttfb, api_tps, api_total, gen_ttft, gen_tps = [], [], [], [], []
        for _ in range(5):
            c = http.client.HTTPConnection("127.0.0.1", sw.api, timeout=60)
            body = json.dumps({"prompt": PROMPT, "max_tokens": n, "temperature": 0, "stream": True,
                               "stream_options": {"include_usage": True}}).encode()
            t0 = time.perf_counter()
            c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            first = last = None
            usage = None
            buf = b""
            while True:
                d = r.read1(65536)
                if not d:
                    break
                now = time.perf_counter()
                buf += d
                while b"\n\n" in buf:
                    ev, buf = buf.split(b"\n\n", 1)
                    if ev == b"data: [DONE]":
                        continue
                    ch = json.loads(ev[6:])
                    if ch.get("usage"):
                        usage = ch["usage"]
                    if ch["choices"] and ch["choices"][0]["text"]:
                        first = first or now
                        last = now
            c.close()
            k = usage["completion_tokens"]
            api_ttfb.append((first - t0) * 1e3)
            api_tps.append((k - 1) / (last - first) if last > first else 0)
            api_total.append((time.perf_counter() - t0) * 1e3)
            g = harness.run([harness.BIN, "generate", "--swarm", "--bootstrap", "127.0.0.1:%d" % sw.boot, "--model",
                             sw.m.torrent, "--tokenizer", harness.shared_model(), "-p", PROMPT, "-n", str(n), "--temp",
                             "0", "--json-timings"], timeout=120, check_rc=0)
            js = json.loads([ln for ln in g.stderr.splitlines() if ln.startswith("{")][-1])
            gen_ttft.append(js["ttft_ms"])
            gen_tps.append(js["gen_tps"])
        # 4 at once (not streamed): total generated tokens / wall time, vs one alone
        def whole(out, i):
            st, r = request(sw.api, "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": n, "temperature": 0})
            out[i] = r["usage"]["completion_tokens"] if st == 200 else 0
        conc = []
        for k_par in (1, 4, 1, 4, 1, 4):
            out = [0] * k_par
            ts = [threading.Thread(target=whole, args=(out, i)) for i in range(k_par)]
            t0 = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            conc.append((k_par, sum(out) / (time.perf_counter() - t0)))
        one = sorted(v for k_, v in conc if k_ == 1)[1]
        four = sorted(v for k_, v in conc if k_ == 4)[1]
        print("measure: whole responses, total tok/s: 1 request %.0f, 4 at once %.0f (x%.2f)" % (one, four, four / one),
              file=sys.stderr)
        med = lambda x: sorted(x)[len(x) // 2]  # noqa: E731
        print("measure (%d tokens asked, %d generated): API streamed: first byte %.2f ms, %.0f tok/s, whole %.1f ms; "
              "generate --swarm: first token %.2f ms, %.0f tok/s" % (n, k, med(api_ttfb), med(api_tps), med(api_total),
                                                                      med(gen_ttft), med(gen_tps)), file=sys.stderr)


if __name__ == "__main__":
    cases = {"completions": case_completions, "chat": case_chat, "concurrent": case_concurrent, "errors": case_errors,
             "notready": case_notready, "disconnect": case_disconnect, "client": case_client, "nodejs": case_nodejs,
             "structured": case_structured, "tools": case_tools, "ollama": case_ollama, "ollamajs": case_ollamajs, "measure": case_measure,
             "measure_structured": case_measure_structured}
    harness.main_cases(cases)
