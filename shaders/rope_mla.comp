// rope_mla.comp — deepseek2's latent attention, for one run of tokens of one sequence (one
// workgroup per token), what the CPU path's attn_mla() does between the matmuls:
//   the compressed kv_c (the first R dims of the kv_a row) RMSNormed with kv_a_norm, the
//   k_pe after it roped; the row kv_c ‖ k_pe stored as f16 at the token's position in the
//   cache (one KV head: [cap][R + n_rot], two halves per word; its values are its first R
//   dims, the attention shader binds it as both);
//   each query head's q_pe (after its q_nope, in the q_b output, kmla apart) roped into the
//   last n_rot dims of the head's attention query (R + n_rot apart; its first R dims are
//   W_k_b[h] · q_nope, written by the expert-indexed matmul).
// RoPE pairs (2i, 2i+1), or (i, i + n_rot/2) with neox, from the step's cos/sin table.
#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer S { float s[]; };              // scratch
layout(std430, set = 0, binding = 1) readonly buffer Wn { float wn[]; };   // kv_a_norm (R)
layout(std430, set = 0, binding = 2) readonly buffer CS { float cs[]; };   // T x n_rot
layout(std430, set = 0, binding = 3) buffer KV { uint kv[]; };             // this layer's cache
layout(push_constant) uniform P {
    uint t0, pos0;            // first token of the run in the step, its position
    uint n_head, R, n_rot, neox;
    uint kd, kmla, nope;      // R + n_rot; a q_b head's size; its q_nope part
    uint k_off, mq_off, q_off; // scratch offsets (floats): kv_a output, q_b output, attention q
    uint cap;
    float eps;
} p;
shared float red[64];

// Dimension j (< n_rot) of the rotated vector whose unrotated dims start at b.
float rot(uint b, uint j, uint cb)
{
    const uint half_ = p.n_rot / 2u;
    uint i, i0, i1;
    if (p.neox != 0u) {
        i = j % half_;
        i0 = i;
        i1 = i + half_;
    } else {
        i = j / 2u;
        i0 = 2u * i;
        i1 = i0 + 1u;
    }
    const float c = cs[cb + i], sn = cs[cb + half_ + i], a0 = s[b + i0], a1 = s[b + i1];
    return j == i0 ? a0 * c - a1 * sn : a0 * sn + a1 * c;
}

void main()
{
    const uint t = p.t0 + gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    const uint pos = p.pos0 + gl_WorkGroupID.x;
    const uint kb = p.k_off + t * p.kd, cb = t * p.n_rot;
    float ss = 0.0;
    for (uint i = tid; i < p.R; i += 64u) ss += s[kb + i] * s[kb + i];
    ss = subgroupAdd(ss);
    if (subgroupElect()) red[gl_SubgroupID] = ss;
    barrier();
    float tot = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++) tot += red[i];
    const float scale = inversesqrt(tot / float(p.R) + p.eps);
    const uint hw = p.kd / 2u;
    for (uint j = tid; j < hw; j += 64u) {
        const uint d = 2u * j;
        vec2 v;
        if (d < p.R) v = vec2(s[kb + d] * scale * wn[d], s[kb + d + 1u] * scale * wn[d + 1u]);
        else v = vec2(rot(kb + p.R, d - p.R, cb), rot(kb + p.R, d + 1u - p.R, cb));
        kv[pos * hw + j] = packHalf2x16(v);
    }
    const uint qd = p.n_head * p.kd;
    for (uint j = tid; j < p.n_head * p.n_rot; j += 64u) {
        const uint h = j / p.n_rot, i = j % p.n_rot;
        s[p.q_off + t * qd + h * p.kd + p.R + i] = rot(p.mq_off + (t * p.n_head + h) * p.kmla + p.nope, i, cb);
    }
}
