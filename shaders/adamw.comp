// AdamW step (decoupled weight decay, bias-corrected), as train.AdamW:
// m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
// w = w·decay − lr·(m/bc1) / (sqrt(v/bc2) + eps), with decay = 1 − lr·wd.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer Wt { float w[]; };
layout(std430, set = 0, binding = 1) readonly buffer Gr { float g[]; };
layout(std430, set = 0, binding = 2) buffer M1 { float m[]; };
layout(std430, set = 0, binding = 3) buffer V2 { float v[]; };
layout(push_constant) uniform PC { uint oW, oG, oM, oV, n; float b1, b2, omb1, omb2, eps, lr, decay, bc1, bc2; } pc;
// omb1 = 1 − b1 and omb2 = 1 − b2 come from the host in float64: 1 − float32(0.999)
// would be off by 1.3e-5 relative.
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    float gi = g[pc.oG + i];
    float mi = pc.b1 * m[pc.oM + i] + pc.omb1 * gi;
    float vi = pc.b2 * v[pc.oV + i] + pc.omb2 * gi * gi;
    m[pc.oM + i] = mi;
    v[pc.oV + i] = vi;
    w[pc.oW + i] = w[pc.oW + i] * pc.decay - pc.lr * (mi / pc.bc1) / (sqrt(vi / pc.bc2) + pc.eps);
}
