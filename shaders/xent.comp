// Cross-entropy rows: loss[r] = logsumexp(z[r]) − z[r][tgt[r]] and, when
// hasGrad != 0, dz[r][v] += scale·(softmax(z[r])[v] − [v == tgt[r]]).
// A row with tgt < 0 has no target: loss 0, no gradient. One workgroup per row.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Z { float z[]; };
layout(std430, set = 0, binding = 1) readonly buffer Tg { int tg[]; };
layout(std430, set = 0, binding = 2) buffer DZ { float dz[]; };
layout(std430, set = 0, binding = 3) buffer L { float loss[]; };
layout(push_constant) uniform PC { uint oZ, oT, oD, oL, rows, vocab, hasGrad; float scale; } pc;
shared float red[256];
void main() {
    uint r = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    int target = tg[pc.oT + r];
    if (target < 0 || uint(target) >= pc.vocab) { // no target (out-of-range ids are the caller's bug; never read outside the row)
        if (t == 0u) loss[pc.oL + r] = 0.0; return; }
    uint bz = pc.oZ + r * pc.vocab;
    float m = -1.0 / 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) m = max(m, z[bz + i]);
    red[t] = m; barrier();
    for (uint h = 128u; h > 0u; h >>= 1) { if (t < h) red[t] = max(red[t], red[t + h]); barrier(); }
    m = red[0]; barrier();
    float s = 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) s += exp(z[bz + i] - m);
    red[t] = s; barrier();
    for (uint h = 128u; h > 0u; h >>= 1) { if (t < h) red[t] += red[t + h]; barrier(); }
    float lse = m + log(red[0]);
    if (t == 0u) loss[pc.oL + r] = lse - z[bz + uint(target)];
    if (pc.hasGrad == 0u) return;
    uint bd = pc.oD + r * pc.vocab;
    for (uint i = t; i < pc.vocab; i += 256u) {
        float p = exp(z[bz + i] - lse);
        if (i == uint(target)) p -= 1.0;
        dz[bd + i] += pc.scale * p;
    }
}
