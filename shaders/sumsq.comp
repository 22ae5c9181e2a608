// Sum of squares (the device interface's SumSquares, gradient clipping):
// workgroup w sums x² over elements [w·per, (w+1)·per) into part[w]; the
// host adds the partials in float64. Each invocation keeps a compensated
// (Kahan) float32 sum of its strided elements, so the error does not grow
// with per; the 256 invocation sums are added in a float32 tree (8
// levels). Squares that are not finite (NaN, or |x| ≥ 2^64 overflowing
// float32) bypass the compensation and make the partial NaN or +Inf; a
// compensated sum that overflows gives +Inf.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer P { float part[]; };
layout(push_constant) uniform PC { uint oX, oP, n, per; } pc;
shared float sh[256];
void main() {
    uint t = gl_LocalInvocationID.x;
    uint i0 = gl_WorkGroupID.x * pc.per;
    uint i1 = min(i0 + pc.per, pc.n);
    precise float s = 0.0;
    precise float c = 0.0;
    float bad = 0.0;
    for (uint i = i0 + t; i < i1; i += 256u) {
        float v = x[pc.oX + i];
        precise float sq = v * v;
        if (isinf(sq) || isnan(sq)) {
            bad += sq;
        } else {
            precise float y = sq - c;
            precise float u = s + y;
            c = (u - s) - y;
            s = u;
        }
    }
    if (isnan(s)) s = uintBitsToFloat(0x7f800000u); // the finite sum overflowed
    sh[t] = s + bad;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1) {
        if (t < k) sh[t] += sh[t + k];
        barrier();
    }
    if (t == 0u) part[pc.oP + gl_WorkGroupID.x] = sh[0];
}
