// One AdamW step with the device interface's AdamWStep scalars, in the
// operation order of train's fused kernel (each operation rounded to
// float32, no contraction: precise):
//   w ← w·decay; m ← m·b1 + g·c1; v ← v·b2 + (g·g)·c2;
//   w ← w + (negLR1·m) / (sqrt(v)/bc2s + eps)
// A gradient that is NaN or ±Inf sets flag[0] (the step is still applied).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer Wt { float w[]; };
layout(std430, set = 0, binding = 1) readonly buffer Gr { float g[]; };
layout(std430, set = 0, binding = 2) buffer M1 { float m[]; };
layout(std430, set = 0, binding = 3) buffer V2 { float v[]; };
layout(std430, set = 0, binding = 4) buffer Fl { uint flag[]; };
layout(push_constant) uniform PC { uint oW, oG, oM, oV, oF, n; float decay, b1, c1, b2, c2, bc2s, eps, negLR1; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    float gi = g[pc.oG + i];
    precise float wi = w[pc.oW + i] * pc.decay;
    precise float mi = m[pc.oM + i] * pc.b1 + gi * pc.c1;
    precise float vi = v[pc.oV + i] * pc.b2 + (gi * gi) * pc.c2;
    precise float den = sqrt(vi) / pc.bc2s + pc.eps;
    precise float nw = wi + (pc.negLR1 * mi) / den;
    w[pc.oW + i] = nw;
    m[pc.oM + i] = mi;
    v[pc.oV + i] = vi;
    if (isnan(gi) || isinf(gi)) flag[pc.oF] = 1u;
}
