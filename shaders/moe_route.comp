// moe_route.comp — the router of a mixture-of-experts layer, one invocation per token, as
// the CPU path's route() (src/infer/stage.c) with softmax gating: the token's n router
// logits (in place) become p = softmax(logits); the k largest p are chosen, the lower
// expert index first on ties; their weights p[chosen], renormalised to sum 1 (norm; the sum
// floored at 2^-14 as the CPU does) and times scale (0: none). The chosen experts go to
// ids[] and their weights to wt[] (token-major, k per token), where the expert-indexed
// matmuls and moe_sum.comp read them: nothing returns to the host.
// mode 1 (gpt-oss, the CPU's softmax-weight gating): the k largest raw logits are chosen
// (the lower index first on ties) and their weights are the softmax over those k logits;
// then norm and scale as above.
#version 450
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer R { float r[]; };       // scratch, as floats
layout(std430, set = 0, binding = 1) buffer Ids { uint ids[]; };    // scratch, as uints
layout(push_constant) uniform P {
    uint T, n, k;
    uint r_off, id_off, w_off; // in 4-byte words of the scratch buffer
    uint norm;
    float scale;
    uint mode; // 0: softmax over all, weights p[chosen]; 1: softmax over the chosen logits
} p;
void main()
{
    const uint t = gl_GlobalInvocationID.x;
    if (t >= p.T) return;
    const uint rb = p.r_off + t * p.n, ib = p.id_off + t * p.k, wb = p.w_off + t * p.k;
    if (p.mode == 0u) {
        float mx = r[rb];
        for (uint e = 1u; e < p.n; e++) mx = max(mx, r[rb + e]);
        float sum = 0.0;
        for (uint e = 0u; e < p.n; e++) {
            const float v = exp(r[rb + e] - mx);
            r[rb + e] = v;
            sum += v;
        }
        for (uint e = 0u; e < p.n; e++) r[rb + e] = r[rb + e] / sum;
    }
    float ws = 0.0;
    for (uint j = 0u; j < p.k; j++) {
        uint best = p.n;
        for (uint e = 0u; e < p.n; e++) {
            bool taken = false;
            for (uint i = 0u; i < j; i++) taken = taken || ids[ib + i] == e;
            if (!taken && (best == p.n || r[rb + e] > r[rb + best])) best = e;
        }
        ids[ib + j] = best;
        const float w = r[rb + best];
        r[wb + j] = w; // the weights live in the same buffer (float view)
        ws += w;
    }
    if (p.mode == 1u) { // softmax over the chosen logits
        float mx = r[wb];
        for (uint j = 1u; j < p.k; j++) mx = max(mx, r[wb + j]);
        ws = 0.0;
        for (uint j = 0u; j < p.k; j++) {
            const float e = exp(r[wb + j] - mx);
            r[wb + j] = e;
            ws += e;
        }
        for (uint j = 0u; j < p.k; j++) r[wb + j] = r[wb + j] / ws;
        if (p.norm != 0u) { // the renormalisation below sums the softmaxed weights again
            ws = 0.0;
            for (uint j = 0u; j < p.k; j++) ws += r[wb + j];
        }
    }
    if (p.norm != 0u) {
        ws = max(ws, 6.103515625e-5);
        for (uint j = 0u; j < p.k; j++) r[wb + j] = r[wb + j] / ws;
    }
    if (p.scale != 0.0 && p.scale != 1.0)
        for (uint j = 0u; j < p.k; j++) r[wb + j] = r[wb + j] * p.scale;
}
