// Bias over rows of cols floats.
//   (default) x[r][c] += b[c], one invocation per element;
//   (-DBWD)   db[c] += Σ_r dy[r][c], one invocation per column, rows summed
//             in order (deterministic). Rows split into chunks carry the
//             running sum in cy[c] between dispatches (mode bit 0: start
//             from cy, bit 1: store the sum in cy instead of adding it to
//             db), so the sum is bitwise that of one dispatch.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer B { float b[]; };
#ifdef BWD
layout(std430, set = 0, binding = 2) buffer C { float cy[]; };
layout(push_constant) uniform PC { uint oX, oB, oC, rows, cols, mode; } pc;
#else
layout(push_constant) uniform PC { uint oX, oB, rows, cols; } pc;
#endif
void main() {
#ifdef BWD
    uint c = gl_GlobalInvocationID.x;
    if (c >= pc.cols) return;
    float acc = (pc.mode & 1u) != 0u ? cy[pc.oC + c] : 0.0;
    for (uint r = 0u; r < pc.rows; r++) acc += x[pc.oX + r * pc.cols + c];
    if ((pc.mode & 2u) != 0u) cy[pc.oC + c] = acc;
    else b[pc.oB + c] += acc;
#else
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.rows * pc.cols) return;
    x[pc.oX + i] += b[pc.oB + i % pc.cols];
#endif
}
