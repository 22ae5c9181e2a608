// GEMM NT with VK_KHR_cooperative_matrix (tensor cores): C[M×N] (+)= A[M×K]·B[N×K]ᵀ
// with f16 operands and f32 accumulation, one 16×16 tile of C per subgroup.
// M, N, K must be multiples of 16 (the host pads or uses gemm_nt otherwise).
//
// NOT COMPILED: glslang-tools 12.0.0 (Debian bookworm) predates
// GL_KHR_cooperative_matrix ("extension not supported"), so there is no
// committed SPIR-V and the backend never selects this kernel; it is listed in
// shaders.Programs with Skip set. With glslang >= 13.1:
//   glslangValidator -V --target-env vulkan1.3 -o gemm_coopmat.spv gemm_coopmat.comp
// It has never run: lavapipe offers no cooperative-matrix extension.
#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
layout(local_size_x_id = 0) in; // = subgroup size
layout(std430, set = 0, binding = 0) readonly buffer A { float16_t a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float16_t b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform PC { uint oA, oB, oC, M, N, K, ldA, ldB, ldC, acc; } pc;
void main() {
    uint i0 = gl_WorkGroupID.y * 16u, j0 = gl_WorkGroupID.x * 16u;
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> mc;
    if (pc.acc != 0u) {
        coopMatLoad(mc, c, pc.oC + i0 * pc.ldC + j0, pc.ldC, gl_CooperativeMatrixLayoutRowMajor);
    } else {
        mc = coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    }
    for (uint k0 = 0u; k0 < pc.K; k0 += 16u) {
        coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> ma;
        coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> mb;
        coopMatLoad(ma, a, pc.oA + i0 * pc.ldA + k0, pc.ldA, gl_CooperativeMatrixLayoutRowMajor);
        // B is [N×K] row-major, i.e. op(B) = Bᵀ [K×N] column-major.
        coopMatLoad(mb, b, pc.oB + j0 * pc.ldB + k0, pc.ldB, gl_CooperativeMatrixLayoutColumnMajor);
        mc = coopMatMulAdd(ma, mb, mc);
    }
    coopMatStore(mc, c, pc.oC + i0 * pc.ldC + j0, pc.ldC, gl_CooperativeMatrixLayoutRowMajor);
}
