// moe_bias.comp — the per-expert biases of a mixture-of-experts layer (gpt-oss), one
// invocation per (slot, element): y[slot][i] += b[e][i], e = the slot's chosen expert
// (ids[], written by moe_route.comp), as the CPU path adds each expert's bias to its rows.
// y and ids are 4-byte word offsets into the scratch buffer (bound twice: floats, uints);
// b is the layer's [n_expert][n] table.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer Y { float y[]; };
layout(std430, set = 0, binding = 1) readonly buffer Ids { uint ids[]; };
layout(std430, set = 0, binding = 2) readonly buffer B { float b[]; };
layout(push_constant) uniform P {
    uint S, n;             // slots, elements per slot
    uint y_off, y_stride;  // floats
    uint id_off, n_expert;
} p;
void main()
{
    const uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * 65535u * 256u;
    if (i >= p.S * p.n) return;
    const uint s = i / p.n, d = i - s * p.n, e = ids[p.id_off + s];
    if (e >= p.n_expert) return;
    y[p.y_off + s * p.y_stride + d] += b[e * p.n + d];
}
