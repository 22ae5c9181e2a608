// Bias over rows of cols floats.
//   (default) x[r][c] += b[c], one invocation per element;
//   (-DBWD)   db[c] += Σ_r dy[r][c], one invocation per column, rows summed
//             in order (deterministic).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer B { float b[]; };
layout(push_constant) uniform PC { uint oX, oB, rows, cols; } pc;
void main() {
#ifdef BWD
    uint c = gl_GlobalInvocationID.x;
    if (c >= pc.cols) return;
    float acc = 0.0;
    for (uint r = 0u; r < pc.rows; r++) acc += x[pc.oX + r * pc.cols + c];
    b[pc.oB + c] += acc;
#else
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.rows * pc.cols) return;
    x[pc.oX + i] += b[pc.oB + i % pc.cols];
#endif
}
