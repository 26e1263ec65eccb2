// oracle_llamacpp.mjs — llama.cpp's next-token logits (node-llama-cpp, its prebuilt CPU
// build) at every position of a token sequence, teacher-forced: the oracle of
// tests/infer/test_oracle.py. One process runs many jobs (node and the library start once).
// usage: node oracle_llamacpp.mjs <node_modules dir> <jobs.json>
//   jobs.json: [{"model": PATH, "out": PATH, "tokens": [int, ...]}, ...]
// Each out gets n_tokens x n_vocab little-endian f32; stdout: one JSON line per job.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modDir, jobsPath] = process.argv.slice(2);
if (!jobsPath) {
    console.error("usage: node oracle_llamacpp.mjs <node_modules> <jobs.json>");
    process.exit(2);
}
const entry = path.join(modDir, "node-llama-cpp", "dist", "index.js");
const { getLlama } = await import(pathToFileURL(entry).href);
const jobs = JSON.parse(fs.readFileSync(jobsPath, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: process.env.SW_ORACLE_LOG || "error" });
for (const job of jobs) {
    const model = await llama.loadModel({ modelPath: job.model, gpuLayers: 0 });
    const ctx = await model.createContext({ contextSize: Math.max(64, job.tokens.length + 8), batchSize: 512,
                                            threads: 2, sequences: 1 });
    const seq = ctx.getSequence();
    // generateNext.logits: the raw logits after this token (no sampler touches them).
    const res = await seq.controlledEvaluate(job.tokens.map((t) => [t, { generateNext: { logits: true } }]));
    let V = 0;
    for (const r of res) if (r && r.next && r.next.logits) V = Math.max(V, r.next.logits.size);
    const out = new Float32Array(job.tokens.length * V);
    res.forEach((r, i) => {
        if (!r || !r.next || !r.next.logits) throw new Error(job.model + ": no logits at position " + i);
        for (const [tok, v] of r.next.logits) out[i * V + tok] = v;
    });
    fs.writeFileSync(job.out, Buffer.from(out.buffer));
    console.log(JSON.stringify({ model: job.model, n_tokens: job.tokens.length, n_vocab: V }));
    await ctx.dispose();
    await model.dispose();
}
await llama.dispose();
