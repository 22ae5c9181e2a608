// Attention backward, step 1, for the entries of attn.comp (pos0 = 0): with
// p the probabilities of query t of head h, dp_j = dout_t·v_j and
// ds_j = scale·p_j·(dp_j − Σ_i p_i·dp_i) for j ≤ t (0 beyond), written in
// the layout of p. One workgroup per (h, e).
// Head lists: workgroup (or invocation) head hl is query head
// kvmap[L + hl] (the map binding holds kvmap, then a list of heads), and
// the probability blocks are indexed by hl: with the identity list all
// heads in order ([NH × T × S]); the attention backward of a sequence whose
// probabilities exceed one binding runs groups of K/V heads, listing only
// their query heads ([nh × T × S]).
#version 450
#define WG 64u
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer DO { float dout[]; };
layout(std430, set = 0, binding = 1) readonly buffer V { float v[]; };
layout(std430, set = 0, binding = 2) readonly buffer Map { int kvmap[]; };
layout(std430, set = 0, binding = 3) readonly buffer Ent { int ent[]; };
layout(std430, set = 0, binding = 4) readonly buffer P { float p[]; };
layout(std430, set = 0, binding = 5) buffer DS { float ds[]; };
layout(push_constant) uniform PC { uint oDO, oV, oM, oE, oP, oDS, NH, NKV, D; float scale; uint L; } pc;
shared float red[WG];
void main() {
    uint hl = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    uint h = uint(kvmap[pc.oM + pc.L + hl]);
    uint eb = pc.oE + gl_WorkGroupID.y * 6u;
    uint qRow = uint(ent[eb]), kv0 = uint(ent[eb + 1u]), pos0 = uint(ent[eb + 2u]);
    uint t = uint(ent[eb + 3u]), T = uint(ent[eb + 4u]), pB = uint(ent[eb + 5u]);
    uint S = pos0 + T, last = pos0 + t;
    uint kh = uint(kvmap[pc.oM + h]);
    uint db = pc.oDO + (qRow * pc.NH + h) * pc.D;
    uint pr = pB + (hl * T + t) * S;
    float sum = 0.0;
    for (uint j = tid; j <= last; j += WG) {
        uint vb = pc.oV + ((kv0 + j) * pc.NKV + kh) * pc.D;
        float dp = 0.0;
        for (uint d = 0u; d < pc.D; d++) dp += dout[db + d] * v[vb + d];
        ds[pc.oDS + pr + j] = dp;
        sum += p[pc.oP + pr + j] * dp;
    }
    red[tid] = sum; barrier();
    for (uint w = WG / 2u; w > 0u; w >>= 1) { if (tid < w) red[tid] += red[tid + w]; barrier(); }
    sum = red[0];
    for (uint j = tid; j < S; j += WG) {
        ds[pc.oDS + pr + j] = j <= last ? pc.scale * p[pc.oP + pr + j] * (ds[pc.oDS + pr + j] - sum) : 0.0;
    }
}
