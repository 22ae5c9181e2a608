// x[i] *= s (the device interface's Scale: gradient clipping).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(push_constant) uniform PC { uint oX, n; float s; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    x[pc.oX + i] *= pc.s;
}
