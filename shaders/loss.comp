// Per-row losses of the device interface, one workgroup per row r of
// logits z [rows × vocab] with target tg[r] (< 0: no target: loss 0 and, for
// XENT, a zero gradient row). loss[r] receives the row's loss in float32
// (the host sums the rows in float64); with hasGrad != 0:
//   XENT (-DXENT):  dz[r] = scale·(softmax(z[r]) − onehot(tg[r]))  (overwrite)
//   KL (-DKL):      loss = Σ p·(log p − log q), p = softmax(teacher[r]),
//                   q = softmax(z[r]); dz[r] += scale·(q − p)
//   SKL (-DSKL):    the same over the k entries idx[r]/val[r] (teacher's
//                   top-k), both sides renormalised over them; dz[r][idx] += …
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Z { float z[]; };
layout(std430, set = 0, binding = 1) readonly buffer Tg { int tg[]; };
layout(std430, set = 0, binding = 2) buffer DZ { float dz[]; };
layout(std430, set = 0, binding = 3) buffer L { float loss[]; };
#if defined(KL)
layout(std430, set = 0, binding = 4) readonly buffer Tc { float tc[]; };
layout(push_constant) uniform PC { uint oZ, oT, oD, oL, oA, rows, vocab, hasGrad; float scale; } pc;
#elif defined(SKL)
layout(std430, set = 0, binding = 4) readonly buffer Ix { int ix[]; };
layout(std430, set = 0, binding = 5) readonly buffer Vl { float vl[]; };
layout(push_constant) uniform PC { uint oZ, oT, oD, oL, oI, oV, rows, vocab, hasGrad, k; float scale; } pc;
#else
layout(push_constant) uniform PC { uint oZ, oT, oD, oL, rows, vocab, hasGrad; float scale; } pc;
#endif
shared float red[256];
float reduceMax(float v, uint t) {
    red[t] = v; barrier();
    for (uint h = 128u; h > 0u; h >>= 1) { if (t < h) red[t] = max(red[t], red[t + h]); barrier(); }
    float r = red[0]; barrier();
    return r;
}
float reduceSum(float v, uint t) {
    red[t] = v; barrier();
    for (uint h = 128u; h > 0u; h >>= 1) { if (t < h) red[t] += red[t + h]; barrier(); }
    float r = red[0]; barrier();
    return r;
}
void main() {
    uint r = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    int target = tg[pc.oT + r];
    uint bz = pc.oZ + r * pc.vocab, bd = pc.oD + r * pc.vocab;
    if (target < 0) {
        if (t == 0u) loss[pc.oL + r] = 0.0;
#ifdef XENT
        if (pc.hasGrad != 0u) for (uint i = t; i < pc.vocab; i += 256u) dz[bd + i] = 0.0;
#endif
        return;
    }
#if defined(SKL)
    uint bi = r * pc.k;
    float m = -1.0 / 0.0, mt = -1.0 / 0.0;
    for (uint i = t; i < pc.k; i += 256u) {
        m = max(m, z[bz + uint(ix[pc.oI + bi + i])]);
        mt = max(mt, vl[pc.oV + bi + i]);
    }
    m = reduceMax(m, t);
    mt = reduceMax(mt, t);
    float s = 0.0, st = 0.0;
    for (uint i = t; i < pc.k; i += 256u) {
        s += exp(z[bz + uint(ix[pc.oI + bi + i])] - m);
        st += exp(vl[pc.oV + bi + i] - mt);
    }
    float lse = m + log(reduceSum(s, t)), lseT = mt + log(reduceSum(st, t));
    float kl = 0.0;
    for (uint i = t; i < pc.k; i += 256u) {
        uint c = uint(ix[pc.oI + bi + i]);
        float lp = vl[pc.oV + bi + i] - lseT, lq = z[bz + c] - lse;
        float p = exp(lp);
        kl += p * (lp - lq);
        if (pc.hasGrad != 0u) dz[pc.oD + r * pc.vocab + c] += pc.scale * (exp(lq) - p);
    }
    kl = reduceSum(kl, t);
    if (t == 0u) loss[pc.oL + r] = kl;
#elif defined(KL)
    uint ba = pc.oA + r * pc.vocab;
    float m = -1.0 / 0.0, mt = -1.0 / 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) { m = max(m, z[bz + i]); mt = max(mt, tc[ba + i]); }
    m = reduceMax(m, t);
    mt = reduceMax(mt, t);
    float s = 0.0, st = 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) { s += exp(z[bz + i] - m); st += exp(tc[ba + i] - mt); }
    float lse = m + log(reduceSum(s, t)), lseT = mt + log(reduceSum(st, t));
    float kl = 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) {
        float lp = tc[ba + i] - lseT, lq = z[bz + i] - lse;
        float p = exp(lp);
        kl += p * (lp - lq);
        if (pc.hasGrad != 0u) dz[bd + i] += pc.scale * (exp(lq) - p);
    }
    kl = reduceSum(kl, t);
    if (t == 0u) loss[pc.oL + r] = kl;
#else
    float m = -1.0 / 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) m = max(m, z[bz + i]);
    m = reduceMax(m, t);
    float s = 0.0;
    for (uint i = t; i < pc.vocab; i += 256u) s += exp(z[bz + i] - m);
    float ls = log(reduceSum(s, t));
    // lse − z_t = (m − z_t) + log Σ exp(z − m): no cancellation of two large
    // terms when the target is the largest logit.
    if (t == 0u) loss[pc.oL + r] = (m - z[bz + uint(target)]) + ls;
    if (pc.hasGrad == 0u) return;
    float lse = m + ls;
    for (uint i = t; i < pc.vocab; i += 256u) {
        float p = exp(z[bz + i] - lse);
        if (i == uint(target)) p -= 1.0;
        dz[bd + i] = pc.scale * p;
    }
#endif
}
