// Attention backward, step 2: dq_t = Σ_{j ≤ t} ds_j·k_j (overwritten), for
// the entries of attn.comp. One invocation per (e, h, d): x over h·D + d,
// y over entries.
// Head lists: the invocation's head hl (of nh) is query head
// kvmap[L + hl] (the map binding holds kvmap, then a list of heads), and
// the probability blocks are indexed by hl: with the identity list all
// heads in order ([NH × T × S]); the attention backward of a sequence whose
// probabilities exceed one binding runs groups of K/V heads, listing only
// their query heads ([nh × T × S]).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer DS { float ds[]; };
layout(std430, set = 0, binding = 1) readonly buffer K { float k[]; };
layout(std430, set = 0, binding = 2) readonly buffer Map { int kvmap[]; };
layout(std430, set = 0, binding = 3) readonly buffer Ent { int ent[]; };
layout(std430, set = 0, binding = 4) buffer DQ { float dq[]; };
layout(push_constant) uniform PC { uint oDS, oK, oM, oE, oDQ, NH, NKV, D, L, nh; } pc;
void main() {
    uint hd = gl_GlobalInvocationID.x;
    if (hd >= pc.nh * pc.D) return;
    uint hl = hd / pc.D, d = hd % pc.D;
    uint h = uint(kvmap[pc.oM + pc.L + hl]);
    uint eb = pc.oE + gl_WorkGroupID.y * 6u;
    uint qRow = uint(ent[eb]), kv0 = uint(ent[eb + 1u]), pos0 = uint(ent[eb + 2u]);
    uint t = uint(ent[eb + 3u]), T = uint(ent[eb + 4u]), pB = uint(ent[eb + 5u]);
    uint S = pos0 + T, last = pos0 + t;
    uint kh = uint(kvmap[pc.oM + h]);
    uint pr = pc.oDS + pB + (hl * T + t) * S;
    float acc = 0.0;
    for (uint j = 0u; j <= last; j++) acc += ds[pr + j] * k[pc.oK + ((kv0 + j) * pc.NKV + kh) * pc.D + d];
    dq[pc.oDQ + (qRow * pc.NH + h) * pc.D + d] = acc;
}
