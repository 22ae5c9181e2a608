// One SGD step with coupled weight decay (the device interface's SGD):
// w ← w − lr·(g + wd·w), each operation rounded to float32 (no
// contraction: precise). The host computes it in float64 and rounds once,
// so the two differ by a few float32 ulps of w.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer W { float w[]; };
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(push_constant) uniform PC { uint oW, oG, n; float lr, wd; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    float wi = w[pc.oW + i];
    precise float d = g[pc.oG + i] + pc.wd * wi;
    precise float nw = wi - pc.lr * d;
    w[pc.oW + i] = nw;
}
