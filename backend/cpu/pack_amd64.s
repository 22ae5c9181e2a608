//go:build amd64 && !purego

#include "textflag.h"

// CHUNKARGS loads the arguments (dst, ds, src, ss, n) that the chunk movers
// share: DI = dst, SI = src, R8, R9 = the strides in bytes, CX = n.
#define CHUNKARGS \
	MOVQ dst+0(FP), DI; \
	MOVQ ds+8(FP), R8; \
	SHLQ $2, R8; \
	MOVQ src+16(FP), SI; \
	MOVQ ss+24(FP), R9; \
	SHLQ $2, R9; \
	MOVQ n+32(FP), CX

// NEXTCHUNK steps DI and SI to the next chunk and loops to loop while
// chunks are left.
#define NEXTCHUNK(loop) \
	ADDQ R9, SI; \
	ADDQ R8, DI; \
	DECQ CX; \
	JNZ loop

// func transposePanelAVX(dst *float32, w int, src *float32, ld, n, groups int)
// dst[q*w + r] = src[r*ld + q] for r < 4*groups, q < n (n a multiple of 8;
// strides in elements). For each 8-column chunk it walks all row groups,
// so the 8 destination rows it writes are finished while they are in L1.
TEXT ·transposePanelAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ ld+24(FP), R9
	SHLQ $2, R9
	MOVQ n+32(FP), CX
	MOVQ groups+40(FP), BX
	LEAQ (R8)(R8*2), R13
	MOVQ R9, R12
	SHLQ $2, R12
	TESTQ CX, CX
	JEQ transposePanelAVX_done
	TESTQ BX, BX
	JEQ transposePanelAVX_done
transposePanelAVX_chunk:
	MOVQ SI, AX
	MOVQ DI, R10
	MOVQ BX, DX
transposePanelAVX_group:
	LEAQ (AX)(R9*2), R11
	VMOVUPS (AX), Y0
	VMOVUPS (AX)(R9*1), Y1
	VMOVUPS (R11), Y2
	VMOVUPS (R11)(R9*1), Y3
	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7
	VUNPCKLPD Y6, Y4, Y0
	VUNPCKHPD Y6, Y4, Y1
	VUNPCKLPD Y7, Y5, Y2
	VUNPCKHPD Y7, Y5, Y3
	VMOVUPS X0, (R10)
	VMOVUPS X1, (R10)(R8*1)
	VMOVUPS X2, (R10)(R8*2)
	VMOVUPS X3, (R10)(R13*1)
	LEAQ (R10)(R8*4), R11
	VEXTRACTF128 $1, Y0, (R11)
	VEXTRACTF128 $1, Y1, (R11)(R8*1)
	VEXTRACTF128 $1, Y2, (R11)(R8*2)
	VEXTRACTF128 $1, Y3, (R11)(R13*1)
	ADDQ R12, AX
	ADDQ $16, R10
	DECQ DX
	JNZ transposePanelAVX_group
	ADDQ $32, SI
	LEAQ (DI)(R8*8), DI
	SUBQ $8, CX
	JNZ transposePanelAVX_chunk
transposePanelAVX_done:
	VZEROUPPER
	RET

// func transposePanelBF16AVX(dst *float32, w int, src *uint16, ld, n, groups int)
// dst[q*w + r] = src[r*ld + q] for r < 4*groups, q < n (n a multiple of 8;
// strides in elements). For each 8-column chunk it walks all row groups,
// so the 8 destination rows it writes are finished while they are in L1.
// The source is bfloat16, widened on load.
TEXT ·transposePanelBF16AVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ w+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ ld+24(FP), R9
	SHLQ $1, R9
	MOVQ n+32(FP), CX
	MOVQ groups+40(FP), BX
	LEAQ (R8)(R8*2), R13
	MOVQ R9, R12
	SHLQ $2, R12
	TESTQ CX, CX
	JEQ transposePanelBF16AVX_done
	TESTQ BX, BX
	JEQ transposePanelBF16AVX_done
transposePanelBF16AVX_chunk:
	MOVQ SI, AX
	MOVQ DI, R10
	MOVQ BX, DX
transposePanelBF16AVX_group:
	LEAQ (AX)(R9*2), R11
	VPMOVZXWD (AX), Y0
	VPSLLD $16, Y0, Y0
	VPMOVZXWD (AX)(R9*1), Y1
	VPSLLD $16, Y1, Y1
	VPMOVZXWD (R11), Y2
	VPSLLD $16, Y2, Y2
	VPMOVZXWD (R11)(R9*1), Y3
	VPSLLD $16, Y3, Y3
	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7
	VUNPCKLPD Y6, Y4, Y0
	VUNPCKHPD Y6, Y4, Y1
	VUNPCKLPD Y7, Y5, Y2
	VUNPCKHPD Y7, Y5, Y3
	VMOVUPS X0, (R10)
	VMOVUPS X1, (R10)(R8*1)
	VMOVUPS X2, (R10)(R8*2)
	VMOVUPS X3, (R10)(R13*1)
	LEAQ (R10)(R8*4), R11
	VEXTRACTF128 $1, Y0, (R11)
	VEXTRACTF128 $1, Y1, (R11)(R8*1)
	VEXTRACTF128 $1, Y2, (R11)(R8*2)
	VEXTRACTF128 $1, Y3, (R11)(R13*1)
	ADDQ R12, AX
	ADDQ $16, R10
	DECQ DX
	JNZ transposePanelBF16AVX_group
	ADDQ $16, SI
	LEAQ (DI)(R8*8), DI
	SUBQ $8, CX
	JNZ transposePanelBF16AVX_chunk
transposePanelBF16AVX_done:
	VZEROUPPER
	RET

// func copyChunksAVX(dst *float32, ds int, src *float32, ss, n, w int)
// Copies n chunks of w floats (w = 6, 8, 12, 16 or 32), chunk c from
// src[c*ss:] to dst[c*ds:] (strides in elements). Pure data movement.
TEXT ·copyChunksAVX(SB), NOSPLIT, $0-48
	CHUNKARGS
	MOVQ w+40(FP), AX
	TESTQ CX, CX
	JEQ copyChunks_done
	CMPQ AX, $32
	JEQ copyChunks_w32
	CMPQ AX, $16
	JEQ copyChunks_w16
	CMPQ AX, $12
	JEQ copyChunks_w12
	CMPQ AX, $8
	JEQ copyChunks_w8
copyChunks_w6:
	VMOVUPS (SI), X0
	MOVQ 16(SI), X1
	VMOVUPS X0, (DI)
	MOVQ X1, 16(DI)
	NEXTCHUNK(copyChunks_w6)
	JMP copyChunks_done
copyChunks_w8:
	VMOVUPS (SI), Y0
	VMOVUPS Y0, (DI)
	NEXTCHUNK(copyChunks_w8)
	JMP copyChunks_done
copyChunks_w12:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), X1
	VMOVUPS Y0, (DI)
	VMOVUPS X1, 32(DI)
	NEXTCHUNK(copyChunks_w12)
	JMP copyChunks_done
copyChunks_w16:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	NEXTCHUNK(copyChunks_w16)
	JMP copyChunks_done
copyChunks_w32:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	NEXTCHUNK(copyChunks_w32)
copyChunks_done:
	VZEROUPPER
	RET

// func padChunksAVX512(dst *float32, ds int, src *float32, ss, n, lo, hi, slo, shi int)
// Copies n chunks of up to 32 floats, chunk c from src[c*ss:] to
// dst[c*ds:]: lanes in the load masks lo (0..15) and hi (16..31) are read,
// the others are zero, and the lanes in the store masks slo, shi written
// (a ragged packed panel with its zero padding in one pass).
TEXT ·padChunksAVX512(SB), NOSPLIT, $0-72
	CHUNKARGS
	MOVQ lo+40(FP), AX
	KMOVW AX, K1
	MOVQ hi+48(FP), AX
	KMOVW AX, K2
	MOVQ slo+56(FP), AX
	KMOVW AX, K3
	MOVQ shi+64(FP), AX
	KMOVW AX, K4
	TESTQ CX, CX
	JEQ padChunks_done
padChunks_loop:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS Z0, K3, (DI)
	VMOVUPS Z1, K4, 64(DI)
	NEXTCHUNK(padChunks_loop)
padChunks_done:
	VZEROUPPER
	RET
