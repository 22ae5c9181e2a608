// Attention backward, step 3, for sequences with their own keys (pos0 = 0,
// qRow = kvRow0 + t): key j of a sequence (entry e with t = j) gets
//   dk_j = Σ_{h in group} Σ_{t ≥ j} ds[h][t][j]·q_t,   dv_j = Σ_h Σ_{t ≥ j} p[h][t][j]·dout_t
// (overwritten), each head's sum over t first, heads in ascending order.
// grp holds the query heads of each K/V head: grp[kh] … grp[kh+1]−1 index
// grp[NKV+1 …]. One invocation per (e, kh, d): x over kh·D + d, y over entries.
// Groups of K/V heads: K/V heads KH0… (nkv of them: x over (kh − KH0)·D
// + d); with list != 0 the probability blocks hold only their query heads
// in grp order from G0 ([nh × T × T], block gi − G0), otherwise all heads
// by index.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer DS { float ds[]; };
layout(std430, set = 0, binding = 1) readonly buffer P { float p[]; };
layout(std430, set = 0, binding = 2) readonly buffer Q { float q[]; };
layout(std430, set = 0, binding = 3) readonly buffer DO { float dout[]; };
layout(std430, set = 0, binding = 4) readonly buffer Grp { int grp[]; };
layout(std430, set = 0, binding = 5) readonly buffer Ent { int ent[]; };
layout(std430, set = 0, binding = 6) buffer DK { float dk[]; };
layout(std430, set = 0, binding = 7) buffer DV { float dv[]; };
layout(push_constant) uniform PC { uint oDS, oP, oQ, oDO, oG, oE, oDK, oDV, NH, NKV, D, G0, KH0, nkv, list; } pc;
void main() {
    uint kd = gl_GlobalInvocationID.x;
    if (kd >= pc.nkv * pc.D) return;
    uint kh = kd / pc.D + pc.KH0, d = kd % pc.D;
    uint eb = pc.oE + gl_WorkGroupID.y * 6u;
    uint kv0 = uint(ent[eb + 1u]), j = uint(ent[eb + 3u]), T = uint(ent[eb + 4u]), pB = uint(ent[eb + 5u]);
    float gk = 0.0, gv = 0.0;
    uint g0 = uint(grp[pc.oG + kh]), g1 = uint(grp[pc.oG + kh + 1u]);
    for (uint gi = g0; gi < g1; gi++) {
        uint h = uint(grp[pc.oG + pc.NKV + 1u + gi]);
        float ak = 0.0, av = 0.0;
        for (uint t = j; t < T; t++) {
            uint pi = pB + ((pc.list != 0u ? gi - pc.G0 : h) * T + t) * T + j;
            uint qi = ((kv0 + t) * pc.NH + h) * pc.D + d;
            ak += ds[pc.oDS + pi] * q[pc.oQ + qi];
            av += p[pc.oP + pi] * dout[pc.oDO + qi];
        }
        gk += ak;
        gv += av;
    }
    uint o = ((kv0 + j) * pc.NKV + kh) * pc.D + d;
    dk[pc.oDK + o] = gk;
    dv[pc.oDV + o] = gv;
}
