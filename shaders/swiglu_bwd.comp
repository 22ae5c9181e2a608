// SwiGLU backward for out = silu(g)·u: with σ = sigmoid(g),
//   dgate = dy·u·σ·(1 + g·(1 − σ)),  dup = dy·g·σ  (both overwritten).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) readonly buffer U { float u[]; };
layout(std430, set = 0, binding = 3) buffer DG { float dg[]; };
layout(std430, set = 0, binding = 4) buffer DU { float du[]; };
layout(push_constant) uniform PC { uint oDY, oG, oU, oDG, oDU, n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    float gv = g[pc.oG + i], d = dy[pc.oDY + i];
    float sg = 1.0 / (1.0 + exp(-gv));
    float uv = u[pc.oU + i];
    dg[pc.oDG + i] = d * uv * sg * (1.0 + gv * (1.0 - sg));
    du[pc.oDU + i] = d * gv * sg;
}
