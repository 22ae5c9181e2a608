// dst[i] += src[i] (the device interface's Add).
#version 450
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) buffer D { float dst[]; };
layout(std430, set = 0, binding = 1) readonly buffer S { float src[]; };
layout(push_constant) uniform PC { uint oD, oS, n; } pc;
void main() {
    uint i = gl_GlobalInvocationID.x + gl_NumWorkGroups.x * 256u * gl_GlobalInvocationID.y;
    if (i >= pc.n) return;
    dst[pc.oD + i] += src[pc.oS + i];
}
