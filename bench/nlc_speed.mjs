// nlc_speed.mjs — llama.cpp's prompt and generation speed on a GGUF through node-llama-cpp
// (its prebuilt CPU build): the side-by-side column of bench/20_kernels.sh.
// usage: node nlc_speed.mjs <node_modules dir> <model.gguf> <threads> [prompt_len] [gen_len]
// stdout: one JSON line {"prompt_tps": .., "gen_tps": ..}. The prompt is a fixed sequence
// of token ids (as `generate --prompt-len` uses); generation is greedy.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modDir, model, threadsArg, ppArg, tgArg] = process.argv.slice(2);
if (!model) {
    console.error("usage: node nlc_speed.mjs <node_modules> <model.gguf> <threads> [prompt_len] [gen_len]");
    process.exit(2);
}
const threads = Number(threadsArg || 2), pp = Number(ppArg || 128), tg = Number(tgArg || 64);
const { getLlama } = await import(pathToFileURL(path.join(modDir, "node-llama-cpp", "dist", "index.js")).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const m = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
const ctx = await m.createContext({ contextSize: pp + tg + 16, batchSize: 512, threads, sequences: 1 });
const seq = ctx.getSequence();
const prompt = Array.from({ length: pp }, (_, i) => 3 + ((i * 7919) % 31000));
let t0 = performance.now();
await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, pp - 1));
const tPrompt = (performance.now() - t0) / 1000;
let n = 0;
t0 = performance.now();
for await (const tok of seq.evaluate([prompt[pp - 1]], { temperature: 0 })) {
    void tok;
    if (++n >= tg) break;
}
const tGen = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ prompt_tps: (pp - 1) / tPrompt, gen_tps: n / tGen, n_gen: n }));
await ctx.dispose();
await m.dispose();
await llama.dispose();
