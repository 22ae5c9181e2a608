// Tiled shared-memory GEMM: C[M×N] (+)= op(A)·op(B), one 64×64 tile of C per
// workgroup of 16×16 invocations, each computing a 4×4 block, K in steps of 16.
// Variants (compile-time defines): TA (A stored [K×M]), TB (B stored [N×K],
// the "NT" linear-layer shape), B_BF16 / B_F16 (B as bf16 or f16, packed two per uint).
// Each operand has an element offset (o*) and a leading dimension (ld*), so
// that the host can split operands larger than maxStorageBufferRange into
// windows. Every element is reduced over k in index order; a K split into
// blocks carries the running sums in T [M×N] between dispatches (mode bit
// 1: start from T, bit 2: store into T instead of C; bit 0: add into C),
// so the result is bitwise that of one dispatch.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
#if defined(B_BF16) || defined(B_F16)
layout(std430, set = 0, binding = 1) readonly buffer B { uint b[]; };
#else
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
#endif
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(std430, set = 0, binding = 3) buffer T { float tc[]; };
layout(push_constant) uniform PC {
    uint oA, oB, oC, oT, M, N, K, ldA, ldB, ldC, mode;
} pc;

const uint BM = 64, BN = 64, BK = 16;
shared float As[BK][BM];
shared float Bs[BK][BN];

float loadB(uint e) {
#if defined(B_BF16)
    uint w = b[e >> 1];
    return uintBitsToFloat(((e & 1u) == 0u ? (w & 0xffffu) : (w >> 16)) << 16);
#elif defined(B_F16)
    return unpackHalf2x16(b[e >> 1])[e & 1u];
#else
    return b[e];
#endif
}

float A_at(uint i, uint p) { // op(A)[i][p]
#ifdef TA
    return a[pc.oA + p * pc.ldA + i];
#else
    return a[pc.oA + i * pc.ldA + p];
#endif
}

float B_at(uint p, uint j) { // op(B)[p][j]
#ifdef TB
    return loadB(pc.oB + j * pc.ldB + p);
#else
    return loadB(pc.oB + p * pc.ldB + j);
#endif
}

void main() {
    uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
    uint tid = ty * 16u + tx;
    uint i0 = gl_WorkGroupID.y * BM, j0 = gl_WorkGroupID.x * BN;
    float acc[4][4];
    for (int r = 0; r < 4; r++) for (int s = 0; s < 4; s++) {
        uint i = i0 + ty + 16u * uint(r), j = j0 + tx + 16u * uint(s);
        acc[r][s] = ((pc.mode & 2u) != 0u && i < pc.M && j < pc.N) ? tc[pc.oT + i * pc.N + j] : 0.0;
    }
    for (uint k0 = 0u; k0 < pc.K; k0 += BK) {
        // 1024 elements of each tile, 4 per invocation.
        for (uint l = 0u; l < 4u; l++) {
            uint e = tid + l * 256u;
#ifdef TA
            uint p = e / BM, i = e % BM; // consecutive invocations read consecutive i
#else
            uint i = e / BK, p = e % BK;
#endif
            uint gi = i0 + i, gp = k0 + p;
            As[p][i] = (gi < pc.M && gp < pc.K) ? A_at(gi, gp) : 0.0;
#ifdef TB
            uint j = e / BK, q = e % BK;
#else
            uint q = e / BN, j = e % BN;
#endif
            uint gj = j0 + j, gq = k0 + q;
            Bs[q][j] = (gj < pc.N && gq < pc.K) ? B_at(gq, gj) : 0.0;
        }
        barrier();
        uint kn = min(BK, pc.K - k0);
        for (uint p = 0u; p < kn; p++) {
            float av[4], bv[4];
            for (int r = 0; r < 4; r++) av[r] = As[p][ty + 16u * uint(r)];
            for (int s = 0; s < 4; s++) bv[s] = Bs[p][tx + 16u * uint(s)];
            for (int r = 0; r < 4; r++) for (int s = 0; s < 4; s++) acc[r][s] += av[r] * bv[s];
        }
        barrier();
    }
    for (int r = 0; r < 4; r++) {
        uint i = i0 + ty + 16u * uint(r);
        if (i >= pc.M) continue;
        for (int s = 0; s < 4; s++) {
            uint j = j0 + tx + 16u * uint(s);
            if (j >= pc.N) continue;
            if ((pc.mode & 4u) != 0u) { tc[pc.oT + i * pc.N + j] = acc[r][s]; continue; }
            uint ci = pc.oC + i * pc.ldC + j;
            c[ci] = ((pc.mode & 1u) != 0u ? c[ci] : 0.0) + acc[r][s];
        }
    }
}
