// Embedding gather: out[t] = table[ids[t]] for rows of dim floats. An id
// outside [0, vocab) writes zeros (the host checks ids before upload; the
// shader never reads outside the table).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Tb { float tb[]; };
layout(std430, set = 0, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, set = 0, binding = 2) buffer O { float o[]; };
layout(push_constant) uniform PC { uint oT, oI, oO, n, dim, vocab; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n * pc.dim) return;
    uint r = i / pc.dim, c = i % pc.dim;
    int id = ids[pc.oI + r];
    o[pc.oO + i] = (id >= 0 && uint(id) < pc.vocab) ? tb[pc.oT + uint(id) * pc.dim + c] : 0.0;
}
