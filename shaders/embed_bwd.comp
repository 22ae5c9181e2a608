// Embedding backward: dE[ids[r]] += dx[r], one invocation per column, rows
// in order (repeated ids sum deterministically). ids are checked on the host.
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer DX { float dx[]; };
layout(std430, set = 0, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, set = 0, binding = 2) buffer DE { float de[]; };
layout(push_constant) uniform PC { uint oX, oI, oE, n, dim, vocab; } pc;
void main() {
    uint c = gl_GlobalInvocationID.x;
    if (c >= pc.dim) return;
    for (uint r = 0u; r < pc.n; r++) {
        int id = ids[pc.oI + r];
        if (id >= 0 && uint(id) < pc.vocab) de[pc.oE + uint(id) * pc.dim + c] += dx[pc.oX + r * pc.dim + c];
    }
}
