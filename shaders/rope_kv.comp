// rope_kv.comp — for one run of tokens of one sequence (one workgroup per token): rotates
// the first n_rot dimensions of each q and k head (pairs (2i, 2i+1), or (i, i + n_rot/2)
// with neox) by the step's cos/sin table, then stores k and v at the token's position in
// the sequence's f16 KV cache: [kv head][cap][head_dim], two halves per word.
#version 450
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Q { float q[]; };
layout(std430, set = 0, binding = 1) buffer K { float k[]; };
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };
layout(std430, set = 0, binding = 3) readonly buffer CS { float cs[]; };
layout(std430, set = 0, binding = 4) buffer KV { uint kv[]; };
layout(push_constant) uniform P {
    uint t0, pos0;            // first token of the run in the step, its position
    uint n_head, n_head_kv, hd, n_rot, neox;
    uint cap;                 // positions the cache holds per head
    uint k_word, v_word;      // this layer's K and V regions (words)
} p;
void main()
{
    const uint t = p.t0 + gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    const uint pos = p.pos0 + gl_WorkGroupID.x;
    const uint half_ = p.n_rot / 2u;
    const uint qd = p.n_head * p.hd, kvd = p.n_head_kv * p.hd;
    const uint cb = t * p.n_rot;
    const uint total = (p.n_head + p.n_head_kv) * half_;
    for (uint j = tid; j < total; j += 64u) {
        const uint h = j / half_, i = j % half_;
        const float c = cs[cb + i], s = cs[cb + half_ + i];
        const uint i0 = p.neox != 0u ? i : 2u * i, i1 = p.neox != 0u ? i + half_ : 2u * i + 1u;
        if (h < p.n_head) {
            const uint b = t * qd + h * p.hd;
            const float a0 = q[b + i0], a1 = q[b + i1];
            q[b + i0] = a0 * c - a1 * s;
            q[b + i1] = a0 * s + a1 * c;
        } else {
            const uint b = t * kvd + (h - p.n_head) * p.hd;
            const float a0 = k[b + i0], a1 = k[b + i1];
            k[b + i0] = a0 * c - a1 * s;
            k[b + i1] = a0 * s + a1 * c;
        }
    }
    memoryBarrierBuffer();
    barrier();
    const uint hw = p.hd / 2u;
    for (uint j = tid; j < p.n_head_kv * hw; j += 64u) {
        const uint g = j / hw, d = (j % hw) * 2u;
        const uint src = t * kvd + g * p.hd + d;
        const uint dst = (g * p.cap + pos) * hw + d / 2u;
        kv[p.k_word + dst] = packHalf2x16(vec2(k[src], k[src + 1u]));
        kv[p.v_word + dst] = packHalf2x16(vec2(v[src], v[src + 1u]));
    }
}
