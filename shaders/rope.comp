// Rotary position embedding in place on x [T × nHeads × headDim]; row t has
// position pos0+t. cos/sin tables are [pos][headDim/2] (built on the host as
// nn.Rope does). interleaved != 0 pairs (2i, 2i+1) (llama2.c), otherwise
// (i, i+d/2) (Hugging Face rotate_half). sign = -1 applies the inverse
// rotation (the backward pass). One invocation per pair.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Cs { float cs[]; };
layout(std430, set = 0, binding = 2) readonly buffer Sn { float sn[]; };
layout(push_constant) uniform PC { uint oX, oC, oS, T, nHeads, headDim, pos0, interleaved; float sign; } pc;
void main() {
    uint half_ = pc.headDim / 2u;
    uint g = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (g >= pc.T * pc.nHeads * half_) return;
    uint i = g % half_, th = g / half_, t = th / pc.nHeads;
    uint base = pc.oX + th * pc.headDim;
    uint ia = i, ib = i + half_;
    if (pc.interleaved != 0u) { ia = 2u * i; ib = 2u * i + 1u; }
    uint tab = (pc.pos0 + t) * half_ + i;
    float c = cs[pc.oC + tab], s = pc.sign * sn[pc.oS + tab];
    float x0 = x[base + ia], x1 = x[base + ib];
    x[base + ia] = x0 * c - x1 * s;
    x[base + ib] = x1 * c + x0 * s;
}
