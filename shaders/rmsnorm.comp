// RMSNorm rows: out[r] = w ⊙ (x[r] · rstd), rstd = 1/sqrt(mean(x[r]²) + eps),
// one workgroup per row; rstd[r] is written when hasRstd != 0.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(std430, set = 0, binding = 3) buffer R { float rs[]; };
layout(push_constant) uniform PC { uint oX, oW, oO, oR, rows, dim, hasRstd; float eps; } pc;
shared float red[256];
void main() {
    uint r = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    uint base = r * pc.dim;
    float s = 0.0;
    for (uint i = t; i < pc.dim; i += 256u) { float v = x[pc.oX + base + i]; s += v * v; }
    red[t] = s;
    barrier();
    for (uint h = 128u; h > 0u; h >>= 1) {
        if (t < h) red[t] += red[t + h];
        barrier();
    }
    float rstd = inversesqrt(red[0] / float(pc.dim) + pc.eps);
    if (t == 0u && pc.hasRstd != 0u) rs[pc.oR + r] = rstd;
    for (uint i = t; i < pc.dim; i += 256u) o[pc.oO + base + i] = w[pc.oW + i] * (x[pc.oX + base + i] * rstd);
}
