// SwiGLU: out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(-gate[i])) · up[i].
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 1) readonly buffer U { float u[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform PC { uint oG, oU, oO, n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    float v = g[pc.oG + i];
    o[pc.oO + i] = v / (1.0 + exp(-v)) * u[pc.oU + i];
}
