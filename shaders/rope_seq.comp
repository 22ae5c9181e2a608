// Rotary position embedding in place over a packed batch: x is [rows ×
// nHeads × headDim]; pairs[2e], pairs[2e+1] are the row and the position of
// entry e (one per row of every sequence). cos/sin are [pos][headDim/2].
// interleaved != 0 pairs (2i, 2i+1) (llama2.c), otherwise (i, i+d/2)
// (rotate_half); sign = −1 is the inverse rotation. One invocation per pair.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Cs { float cs[]; };
layout(std430, set = 0, binding = 2) readonly buffer Sn { float sn[]; };
layout(std430, set = 0, binding = 3) readonly buffer Pr { int pr[]; };
layout(push_constant) uniform PC { uint oX, oC, oS, oP, n, nHeads, headDim, interleaved; float sign; } pc;
void main() {
    uint half_ = pc.headDim / 2u;
    uint g = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (g >= pc.n * pc.nHeads * half_) return;
    uint i = g % half_, eh = g / half_, e = eh / pc.nHeads, h = eh % pc.nHeads;
    uint row = uint(pr[pc.oP + 2u * e]), pos = uint(pr[pc.oP + 2u * e + 1u]);
    uint base = pc.oX + (row * pc.nHeads + h) * pc.headDim;
    uint ia = i, ib = i + half_;
    if (pc.interleaved != 0u) { ia = 2u * i; ib = 2u * i + 1u; }
    uint tab = pos * half_ + i;
    float c = cs[pc.oC + tab], s = pc.sign * sn[pc.oS + tab];
    float x0 = x[base + ia], x1 = x[base + ib];
    x[base + ia] = x0 * c - x1 * s;
    x[base + ib] = x1 * c + x0 * s;
}
