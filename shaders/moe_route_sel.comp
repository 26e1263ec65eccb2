// moe_route_sel.comp — the router of a mixture-of-experts layer that chooses by a selection
// score (deepseek2), one invocation per token, as the CPU path's route() (src/infer/stage.c):
//   p = softmax(logits) or sigmoid(logits) (gating), in place;
//   score(e) = p[e] + bias[e] (DeepSeek V3's exp_probs_b; has_bias 0: none);
//   grouped top-k (n_group > 1): the n_group_used groups of n/n_group experts whose two best
//   scores sum highest (the lower group first on ties), the other groups' experts not taken;
//   the k best scores, the lower expert index first on ties; their weights p[chosen] (not
//   the score), renormalised to sum 1 (norm; the sum floored at 2^-14 as the CPU does) and
//   times scale (0: none). ids[] and wt[] as moe_route.comp writes them.
#version 450
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer R { float r[]; };       // scratch, as floats
layout(std430, set = 0, binding = 1) buffer Ids { uint ids[]; };    // scratch, as uints
layout(std430, set = 0, binding = 2) readonly buffer B { float bias[]; };
layout(push_constant) uniform P {
    uint T, n, k;
    uint r_off, id_off, w_off; // in 4-byte words of the scratch buffer
    uint norm;
    float scale;
    uint sigmoid_;             // 1: sigmoid gating; 0: softmax
    uint has_bias;
    uint n_group, n_group_used; // n_group <= 32
} p;

float score(uint rb, uint e) { return r[rb + e] + (p.has_bias != 0u ? bias[e] : 0.0); }

void main()
{
    const uint t = gl_GlobalInvocationID.x;
    if (t >= p.T) return;
    const uint rb = p.r_off + t * p.n, ib = p.id_off + t * p.k, wb = p.w_off + t * p.k;
    if (p.sigmoid_ != 0u) {
        for (uint e = 0u; e < p.n; e++) r[rb + e] = 1.0 / (1.0 + exp(-r[rb + e]));
    } else {
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
    uint keep = 0xFFFFFFFFu; // groups whose experts may be chosen (bit g)
    uint per = p.n;
    if (p.n_group > 1u) {
        per = p.n / p.n_group;
        float gs[32];
        for (uint g = 0u; g < p.n_group; g++) {
            float a = uintBitsToFloat(0xFF800000u), b = a; // the two largest (from -inf)
            for (uint i = 0u; i < per; i++) {
                const float v = score(rb, g * per + i);
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            gs[g] = a + b;
        }
        keep = 0u;
        for (uint j = 0u; j < p.n_group_used; j++) {
            uint best = p.n_group;
            for (uint g = 0u; g < p.n_group; g++)
                if ((keep & (1u << g)) == 0u && (best == p.n_group || gs[g] > gs[best])) best = g;
            keep |= 1u << best;
        }
    }
    float ws = 0.0;
    for (uint j = 0u; j < p.k; j++) {
        uint best = p.n;
        float bs = 0.0;
        for (uint e = 0u; e < p.n; e++) {
            if ((keep & (1u << (e / per))) == 0u) continue;
            bool taken = false;
            for (uint i = 0u; i < j; i++) taken = taken || ids[ib + i] == e;
            const float sc = score(rb, e);
            if (!taken && (best == p.n || sc > bs)) {
                best = e;
                bs = sc;
            }
        }
        ids[ib + j] = best;
        const float w = r[rb + best];
        r[wb + j] = w; // the weights live in the same buffer (float view)
        ws += w;
    }
    if (p.norm != 0u) {
        ws = max(ws, 6.103515625e-5);
        for (uint j = 0u; j < p.k; j++) r[wb + j] = r[wb + j] / ws;
    }
    if (p.scale != 0.0 && p.scale != 1.0)
        for (uint j = 0u; j < p.k; j++) r[wb + j] = r[wb + j] * p.scale;
}
