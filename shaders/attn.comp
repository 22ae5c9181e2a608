// Causal grouped-query attention over a packed batch of sequences. Entry e
// (ent[6e..6e+5] = qRow, kvRow0, pos0, t, T, pBase) is query t of a
// sequence of T queries at positions pos0…pos0+T−1: its query is row qRow
// of q [rows × NH × D], its keys and values are rows kvRow0 … kvRow0+pos0+t
// of k and v [· × NKV × D], and its probabilities go to the row
// p[pBase + (h·T + t)·S …] of length S = pos0+T (zero beyond the causal
// limit), the layout [NH × T × S] per sequence. kvmap[h] is the K/V head of
// query head h. noOut != 0 skips the output (recomputing probabilities).
// One workgroup per (h, e).
// Head lists: workgroup (or invocation) head hl is query head
// kvmap[L + hl] (the map binding holds kvmap, then a list of heads), and
// the probability blocks are indexed by hl: with the identity list all
// heads in order ([NH × T × S]); the attention backward of a sequence whose
// probabilities exceed one binding runs groups of K/V heads, listing only
// their query heads ([nh × T × S]).
#version 450
#define WG 64u
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Q { float q[]; };
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };
layout(std430, set = 0, binding = 2) readonly buffer V { float v[]; };
layout(std430, set = 0, binding = 3) readonly buffer Map { int kvmap[]; };
layout(std430, set = 0, binding = 4) readonly buffer Ent { int ent[]; };
layout(std430, set = 0, binding = 5) coherent buffer P { float p[]; };
layout(std430, set = 0, binding = 6) buffer O { float o[]; };
layout(push_constant) uniform PC { uint oQ, oK, oV, oM, oE, oP, oO, NH, NKV, D, noOut; float scale; uint L; } pc;
shared float red[WG];
void main() {
    uint hl = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    uint h = uint(kvmap[pc.oM + pc.L + hl]);
    uint eb = pc.oE + gl_WorkGroupID.y * 6u;
    uint qRow = uint(ent[eb]), kv0 = uint(ent[eb + 1u]), pos0 = uint(ent[eb + 2u]);
    uint t = uint(ent[eb + 3u]), T = uint(ent[eb + 4u]), pB = uint(ent[eb + 5u]);
    uint S = pos0 + T, last = pos0 + t;
    uint kh = uint(kvmap[pc.oM + h]);
    uint qb = pc.oQ + (qRow * pc.NH + h) * pc.D;
    uint pb = pc.oP + pB + (hl * T + t) * S;
    float m = -1.0 / 0.0;
    for (uint s = tid; s < S; s += WG) {
        float sc = 0.0;
        if (s <= last) {
            uint kb = pc.oK + ((kv0 + s) * pc.NKV + kh) * pc.D;
            for (uint d = 0u; d < pc.D; d++) sc += q[qb + d] * k[kb + d];
            sc *= pc.scale;
            m = max(m, sc);
        }
        p[pb + s] = sc;
    }
    red[tid] = m; barrier();
    for (uint w = WG / 2u; w > 0u; w >>= 1) { if (tid < w) red[tid] = max(red[tid], red[tid + w]); barrier(); }
    m = red[0]; barrier();
    float sum = 0.0;
    for (uint s = tid; s < S; s += WG) {
        float e = s <= last ? exp(p[pb + s] - m) : 0.0;
        p[pb + s] = e;
        sum += e;
    }
    red[tid] = sum; barrier();
    for (uint w = WG / 2u; w > 0u; w >>= 1) { if (tid < w) red[tid] += red[tid + w]; barrier(); }
    float inv = 1.0 / red[0];
    for (uint s = tid; s < S; s += WG) p[pb + s] *= inv;
    if (pc.noOut != 0u) return;
    memoryBarrierBuffer();
    barrier();
    uint ob = pc.oO + (qRow * pc.NH + h) * pc.D;
    for (uint d = tid; d < pc.D; d += WG) {
        float acc = 0.0;
        for (uint s = 0u; s <= last; s++) acc += p[pb + s] * v[pc.oV + ((kv0 + s) * pc.NKV + kh) * pc.D + d];
        o[ob + d] = acc;
    }
}
