// Causal multi-head attention forward with grouped K/V heads (any map of
// query heads to K/V heads). q is [T × H × D], k and v are [S × KVH × D],
// kvmap[h] is the K/V head of query head h. Query row t has position
// pos0 + t and attends to positions 0..pos0+t. Writes the probabilities
// p [T × H × S] (zero beyond the causal limit; kept for the backward pass)
// and out [T × H × D]. One workgroup per (t, h).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };
layout(std430, set = 0, binding = 3) readonly buffer Map { int kvmap[]; };
layout(std430, set = 0, binding = 4) coherent buffer P { float p[]; };
layout(std430, set = 0, binding = 5) buffer O { float o[]; };
layout(push_constant) uniform PC { uint oQ, oK, oV, oM, oP, oO, T, S, H, KVH, D, pos0; float scale; } pc;
shared float red[256];
void main() {
    uint t = gl_WorkGroupID.x / pc.H, h = gl_WorkGroupID.x % pc.H, tid = gl_LocalInvocationID.x;
    uint kh = uint(kvmap[pc.oM + h]);
    uint last = min(pc.pos0 + t, pc.S - 1u);
    uint qb = pc.oQ + (t * pc.H + h) * pc.D;
    uint pb = pc.oP + (t * pc.H + h) * pc.S;
    float m = -1.0 / 0.0;
    for (uint s = tid; s < pc.S; s += 256u) {
        float sc = 0.0;
        if (s <= last) {
            uint kb = pc.oK + (s * pc.KVH + kh) * pc.D;
            for (uint d = 0u; d < pc.D; d++) sc += q[qb + d] * k[kb + d];
            sc *= pc.scale;
            m = max(m, sc);
        }
        p[pb + s] = sc;
    }
    red[tid] = m; barrier();
    for (uint w = 128u; w > 0u; w >>= 1) { if (tid < w) red[tid] = max(red[tid], red[tid + w]); barrier(); }
    m = red[0]; barrier();
    float sum = 0.0;
    for (uint s = tid; s < pc.S; s += 256u) {
        float e = s <= last ? exp(p[pb + s] - m) : 0.0;
        p[pb + s] = e;
        sum += e;
    }
    red[tid] = sum; barrier();
    for (uint w = 128u; w > 0u; w >>= 1) { if (tid < w) red[tid] += red[tid + w]; barrier(); }
    float inv = 1.0 / red[0];
    for (uint s = tid; s < pc.S; s += 256u) p[pb + s] *= inv;
    memoryBarrierBuffer();
    barrier();
    uint ob = pc.oO + (t * pc.H + h) * pc.D;
    for (uint d = tid; d < pc.D; d += 256u) {
        float acc = 0.0;
        for (uint s = 0u; s <= last; s++) acc += p[pb + s] * v[pc.oV + (s * pc.KVH + kh) * pc.D + d];
        o[ob + d] = acc;
    }
}
