// rmsnorm.comp — y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, one workgroup per row (a
// token's vector, or one head of it for the per-head q/k norms); with add, y[t] += that
// (the post-norms' residual add). In place (x = y) is allowed without add.
#version 450
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wn { float wn[]; };
layout(std430, set = 0, binding = 2) buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint n;          // elements per row
    uint x_off, y_off, w_off;
    float eps;
    uint add;        // 1: y += the normed row
} p;
shared float red[64];
void main()
{
    const uint t = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    const uint xb = p.x_off + t * p.n, yb = p.y_off + t * p.n;
    float ss = 0.0;
    for (uint i = tid; i < p.n; i += 64u) {
        const float v = x[xb + i];
        ss += v * v;
    }
    ss = subgroupAdd(ss);
    if (subgroupElect()) red[gl_SubgroupID] = ss;
    barrier();
    float tot = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++) tot += red[i];
    const float scale = inversesqrt(tot / float(p.n) + p.eps);
    if (p.add != 0u)
        for (uint i = tid; i < p.n; i += 64u) y[yb + i] += x[xb + i] * scale * wn[p.w_off + i];
    else
        for (uint i = tid; i < p.n; i += 64u) y[yb + i] = x[xb + i] * scale * wn[p.w_off + i];
}
