// RMSNorm backward for y = w ⊙ x·s (s = rstd[r], saved by the forward):
//   (default) dx[r][j] += s·w[j]·dy[j] − s³/dim · x[j] · Σ_i dy[i]·w[i]·x[i],
//             one workgroup per row;
//   (-DDW)    dw[i] += Σ_r dy[r][i]·x[r][i]·s[r], one invocation per column,
//             rows summed in order; rows split into chunks carry the running
//             sum in cy (mode as in addbias.comp), bitwise one dispatch's.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 1) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 2) readonly buffer W { float w[]; };
layout(std430, set = 0, binding = 3) readonly buffer R { float rs[]; };
layout(std430, set = 0, binding = 4) buffer D { float dst[]; };
#ifdef DW
layout(std430, set = 0, binding = 5) buffer C { float cy[]; };
layout(push_constant) uniform PC { uint oDY, oX, oW, oR, oD, oC, rows, dim, mode; } pc;
#else
layout(push_constant) uniform PC { uint oDY, oX, oW, oR, oD, rows, dim; } pc;
#endif
#ifdef DW
void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.dim) return;
    float acc = (pc.mode & 1u) != 0u ? cy[pc.oC + i] : 0.0;
    for (uint r = 0u; r < pc.rows; r++) {
        uint e = r * pc.dim + i;
        acc += dy[pc.oDY + e] * x[pc.oX + e] * rs[pc.oR + r];
    }
    if ((pc.mode & 2u) != 0u) cy[pc.oC + i] = acc;
    else dst[pc.oD + i] += acc;
}
#else
shared float red[256];
void main() {
    uint r = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    uint b = r * pc.dim;
    float c = 0.0;
    for (uint i = t; i < pc.dim; i += 256u) c += dy[pc.oDY + b + i] * w[pc.oW + i] * x[pc.oX + b + i];
    red[t] = c; barrier();
    for (uint h = 128u; h > 0u; h >>= 1) { if (t < h) red[t] += red[t + h]; barrier(); }
    float s = rs[pc.oR + r];
    float coef = s * s * s * red[0] / float(pc.dim);
    for (uint j = t; j < pc.dim; j += 256u)
        dst[pc.oD + b + j] += s * w[pc.oW + j] * dy[pc.oDY + b + j] - coef * x[pc.oX + b + j];
}
#endif
