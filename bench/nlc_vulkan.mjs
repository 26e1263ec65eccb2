// nlc_vulkan.mjs — llama.cpp's prompt and generation speed on a GGUF through node-llama-cpp's
// prebuilt Vulkan binary (@node-llama-cpp/linux-x64-vulkan), every layer on the GPU: the
// reference column of bench/80_gpu.sh.
// usage: node nlc_vulkan.mjs <node_modules dir> <model.gguf> [prompt_len] [gen_len]
// stdout: one JSON line {"prompt_tps", "gen_tps", "n_gen", "gpu"}. The prompt is the fixed
// sequence of token ids bench/gpu_side.py gives shardswarm (3 + i*7919 mod 31000); greedy.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modDir, model, ppArg, tgArg] = process.argv.slice(2);
if (!model) {
    console.error("usage: node nlc_vulkan.mjs <node_modules> <model.gguf> [prompt_len] [gen_len]");
    process.exit(2);
}
const pp = Number(ppArg || 128), tg = Number(tgArg || 64);
const { getLlama } = await import(pathToFileURL(path.join(modDir, "node-llama-cpp", "dist", "index.js")).href);
const llama = await getLlama({ gpu: "vulkan", build: "never", logLevel: "error" });
const m = await llama.loadModel({ modelPath: model, gpuLayers: "max" });
const ctx = await m.createContext({ contextSize: pp + tg + 16, batchSize: 512, sequences: 1 });
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
const gpu = llama.gpu + ": " + (await llama.getGpuDeviceNames()).join(", ");
console.log(JSON.stringify({ prompt_tps: (pp - 1) / tPrompt, gen_tps: n / tGen, n_gen: n, gpu }));
await ctx.dispose();
await m.dispose();
await llama.dispose();
