// attn.comp — causal attention of one run of tokens of one sequence over its f16 KV cache:
// one workgroup per (query head, token). Keys are taken 64 at a time (one per invocation:
// its score), and the output is kept as a running softmax (max, sum, weighted values;
// each invocation owns head_dim/64 output dimensions), so no score buffer of the context's
// length is needed. Optional: a sliding window (a query at p sees keys p - window + 1 .. p)
// and soft-capping of the scores (cap * tanh(score / cap)), as gemma has; attention sinks
// (gpt-oss: sinks != 0): head h's sink[h] is one more logit in the softmax's denominator,
// with no value (the running softmax starts at max = sink, sum = 1).
// -DNACC=n: heads of up to 64 n dimensions (default 4: 256). deepseek2's latent attention
// (attn_mla, NACC 16) has one KV head of kv_lora_rank + n_rot dimensions (576 in V2/V3)
// whose values are its keys' rows: bound with v_word = k_word.
#version 450
layout(local_size_x = 64) in;
#ifndef NACC
#define NACC 4
#endif
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };
layout(std430, set = 0, binding = 1) readonly buffer KV { uint kv[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(std430, set = 0, binding = 3) readonly buffer Sk { float sink[]; }; // n_head (sinks != 0)
layout(push_constant) uniform P {
    uint t0, pos0;
    uint n_head, group, hd;   // group: query heads per KV head
    uint cap;
    uint k_word, v_word;
    float scale;
    uint window;              // 0: every earlier key
    float softcap;            // 0: none
    uint sinks;               // 1: sink[h] joins the softmax (binding 3)
} p;
shared float qs[64 * NACC];
shared float sc[64];
void main()
{
    const uint h = gl_WorkGroupID.x, tl = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    const uint t = p.t0 + tl, pos = p.pos0 + tl, n_keys = pos + 1u;
    const uint lo = p.window != 0u && n_keys > p.window ? n_keys - p.window : 0u;
    const uint qd = p.n_head * p.hd, hw = p.hd / 2u, g = h / p.group;
    for (uint d = tid; d < p.hd; d += 64u) qs[d] = q[t * qd + h * p.hd + d];
    barrier();
    const uint kb = p.k_word + g * p.cap * hw, vb = p.v_word + g * p.cap * hw;
    float m = -1.0e30, l = 0.0;
    if (p.sinks != 0u) {
        m = sink[h];
        l = 1.0;
    }
    float acc[NACC];
    for (uint a = 0u; a < NACC; a++) acc[a] = 0.0;
    for (uint base = lo; base < n_keys; base += 64u) {
        const uint key = base + tid;
        float s = -1.0e30;
        if (key < n_keys) {
            float dot = 0.0;
            const uint kr = kb + key * hw;
            for (uint d = 0u; d < hw; d++) {
                const vec2 k2 = unpackHalf2x16(kv[kr + d]);
                dot += qs[2u * d] * k2.x + qs[2u * d + 1u] * k2.y;
            }
            s = dot * p.scale;
            if (p.softcap > 0.0) s = p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
        }
        sc[tid] = s;
        barrier();
        const uint nk = min(64u, n_keys - base);
        float tm = m;
        for (uint j = 0u; j < nk; j++) tm = max(tm, sc[j]);
        const float corr = exp(m - tm);
        l *= corr;
        for (uint a = 0u; a < NACC; a++) acc[a] *= corr;
        for (uint j = 0u; j < nk; j++) {
            const float e = exp(sc[j] - tm);
            l += e;
            const uint vr = vb + (base + j) * hw;
            for (uint a = 0u; a < NACC; a++) {
                const uint d = tid + 64u * a;
                if (d < p.hd) {
                    const vec2 v2 = unpackHalf2x16(kv[vr + d / 2u]);
                    acc[a] += e * ((d & 1u) != 0u ? v2.y : v2.x);
                }
            }
        }
        m = tm;
        barrier();
    }
    for (uint a = 0u; a < NACC; a++) {
        const uint d = tid + 64u * a;
        if (d < p.hd) o[t * qd + h * p.hd + d] = acc[a] / l;
    }
}
