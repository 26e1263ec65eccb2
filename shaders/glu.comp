// glu.comp — g[i] = act(g[i]) * u[i]: SwiGLU (silu) or GeGLU (tanh GELU), n elements; or
// (act 2) gpt-oss's clamped form: x = min(g, 7), y = clamp(u, -7, 7), x * sigmoid(1.702 x) * (y + 1).
// tanh's argument is clamped to +-15 (where it is 1 in f32): some drivers compute tanh
// from exponentials that overflow to inf/inf.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer G { float g[]; };
layout(std430, set = 0, binding = 1) readonly buffer U { float u[]; };
layout(push_constant) uniform P { uint n, act; } p;
void main()
{
    const uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * 65535u * 256u;
    if (i >= p.n) return;
    const float a = g[i];
    float r;
    if (p.act == 2u) {
        const float x = min(a, 7.0), y = clamp(u[i], -7.0, 7.0);
        g[i] = x / (1.0 + exp(-1.702 * x)) * (y + 1.0);
        return;
    }
    if (p.act == 1u) r = 0.5 * a * (1.0 + tanh(clamp(0.7978845608 * a * (1.0 + 0.044715 * a * a), -15.0, 15.0)));
    else r = a / (1.0 + exp(-a));
    g[i] = r * u[i];
}
