// Row softmax (or log-softmax with LOG): y[r] = softmax(x[r]), max subtracted,
// one workgroup per row. y may be the same buffer as x.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform PC { uint oX, oY, rows, cols; } pc;
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
    uint bx = pc.oX + r * pc.cols, by = pc.oY + r * pc.cols;
    float m = -1.0 / 0.0;
    for (uint i = t; i < pc.cols; i += 256u) m = max(m, x[bx + i]);
    m = reduceMax(m, t);
    float s = 0.0;
    for (uint i = t; i < pc.cols; i += 256u) s += exp(x[bx + i] - m);
    s = reduceSum(s, t);
#ifdef LOG
    float lse = m + log(s);
    for (uint i = t; i < pc.cols; i += 256u) y[by + i] = x[bx + i] - lse;
#else
    float inv = 1.0 / s;
    for (uint i = t; i < pc.cols; i += 256u) y[by + i] = exp(x[bx + i] - m) * inv;
#endif
}
