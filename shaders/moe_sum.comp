// moe_sum.comp — the output of a mixture-of-experts layer, one invocation per (token, dim):
//   o = sum over the token's k slots, in ascending expert order (as the CPU path adds them),
//       of wt[slot] * y[slot]  (+ sigmoid(shg[t]) * sh[t], qwen2moe's gated shared expert)
// then x += o (accumulate) or x = o (a post-norm follows). All offsets are 4-byte words of
// the scratch buffer, bound twice (floats, uints).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer S { float s[]; };
layout(std430, set = 0, binding = 1) readonly buffer Ids { uint ids[]; };
layout(push_constant) uniform P {
    uint T, E, k;
    uint y_off, id_off, w_off, x_off;
    uint sh_off, shg_off; // ~0u: no shared expert / no gate on it
    uint acc;
} p;
void main()
{
    const uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * 65535u * 256u;
    if (i >= p.T * p.E) return;
    const uint t = i / p.E, d = i - t * p.E;
    float o = 0.0;
    uint prev = 0u;
    bool first = true;
    for (uint j = 0u; j < p.k; j++) { // the next larger expert id among the token's slots
        uint cur = 0xFFFFFFFFu, cj = 0u;
        for (uint jj = 0u; jj < p.k; jj++) {
            const uint e = ids[p.id_off + t * p.k + jj];
            if ((first || e > prev) && e < cur) {
                cur = e;
                cj = jj;
            }
        }
        if (cur == 0xFFFFFFFFu) break;
        const uint sl = t * p.k + cj;
        o += s[p.w_off + sl] * s[p.y_off + sl * p.E + d];
        prev = cur;
        first = false;
    }
    if (p.sh_off != 0xFFFFFFFFu) {
        const float g = p.shg_off != 0xFFFFFFFFu ? 1.0 / (1.0 + exp(-s[p.shg_off + t])) : 1.0;
        o += g * s[p.sh_off + t * p.E + d];
    }
    if (p.acc != 0u) s[p.x_off + i] += o;
    else s[p.x_off + i] = o;
}
