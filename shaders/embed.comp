// Embedding gather: out[t] = table[ids[t]] for rows of dim floats. An id
// outside [0, vocab) leaves its row untouched: a table split into row ranges
// runs one dispatch per range with the ids rebased (the host checks the
// ids before upload; the shader never reads outside the bound table).
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
    if (id >= 0 && uint(id) < pc.vocab) o[pc.oO + i] = tb[pc.oT + uint(id) * pc.dim + c];
}
