//go:build amd64 && !purego

#include "textflag.h"

// func transpose4AVX(dst *float32, dstride int, src *float32, sstride, n int)
// dst[q*dstride + r] = src[r*sstride + q] for r < 4, q < n (n a multiple of
// 8; strides in elements): four rows at a time through 4×4 transposes in
// each 128-bit lane.
TEXT ·transpose4AVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ dstride+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ sstride+24(FP), R9
	SHLQ $2, R9
	MOVQ n+32(FP), CX
	LEAQ (SI)(R9*1), R10
	LEAQ (R10)(R9*1), R11
	LEAQ (R11)(R9*1), R12
	LEAQ (R8)(R8*2), R13
	TESTQ CX, CX
	JEQ transpose4AVX_done
transpose4AVX_loop:
	// Prefetch the same columns of the next four rows (the next call).
	PREFETCHT0 (SI)(R9*4)
	PREFETCHT0 (R10)(R9*4)
	PREFETCHT0 (R11)(R9*4)
	PREFETCHT0 (R12)(R9*4)
	VMOVUPS (SI), Y0
	VMOVUPS (R10), Y1
	VMOVUPS (R11), Y2
	VMOVUPS (R12), Y3
	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7
	VUNPCKLPD Y6, Y4, Y0
	VUNPCKHPD Y6, Y4, Y1
	VUNPCKLPD Y7, Y5, Y2
	VUNPCKHPD Y7, Y5, Y3
	VMOVUPS X0, (DI)
	VMOVUPS X1, (DI)(R8*1)
	VMOVUPS X2, (DI)(R8*2)
	VMOVUPS X3, (DI)(R13*1)
	LEAQ (DI)(R8*4), DX
	VEXTRACTF128 $1, Y0, (DX)
	VEXTRACTF128 $1, Y1, (DX)(R8*1)
	VEXTRACTF128 $1, Y2, (DX)(R8*2)
	VEXTRACTF128 $1, Y3, (DX)(R13*1)
	LEAQ (DX)(R8*4), DI
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	SUBQ $8, CX
	JNZ transpose4AVX_loop
transpose4AVX_done:
	VZEROUPPER
	RET

// func transpose4BF16AVX(dst *float32, dstride int, src *uint16, sstride, n int)
// dst[q*dstride + r] = src[r*sstride + q] for r < 4, q < n (n a multiple of
// 8; strides in elements): four rows at a time through 4×4 transposes in
// each 128-bit lane. The source is bfloat16, widened on load.
TEXT ·transpose4BF16AVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ dstride+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ sstride+24(FP), R9
	SHLQ $1, R9
	MOVQ n+32(FP), CX
	LEAQ (SI)(R9*1), R10
	LEAQ (R10)(R9*1), R11
	LEAQ (R11)(R9*1), R12
	LEAQ (R8)(R8*2), R13
	TESTQ CX, CX
	JEQ transpose4BF16AVX_done
transpose4BF16AVX_loop:
	// Prefetch the same columns of the next four rows (the next call).
	PREFETCHT0 (SI)(R9*4)
	PREFETCHT0 (R10)(R9*4)
	PREFETCHT0 (R11)(R9*4)
	PREFETCHT0 (R12)(R9*4)
	VPMOVZXWD (SI), Y0
	VPSLLD $16, Y0, Y0
	VPMOVZXWD (R10), Y1
	VPSLLD $16, Y1, Y1
	VPMOVZXWD (R11), Y2
	VPSLLD $16, Y2, Y2
	VPMOVZXWD (R12), Y3
	VPSLLD $16, Y3, Y3
	VUNPCKLPS Y1, Y0, Y4
	VUNPCKHPS Y1, Y0, Y5
	VUNPCKLPS Y3, Y2, Y6
	VUNPCKHPS Y3, Y2, Y7
	VUNPCKLPD Y6, Y4, Y0
	VUNPCKHPD Y6, Y4, Y1
	VUNPCKLPD Y7, Y5, Y2
	VUNPCKHPD Y7, Y5, Y3
	VMOVUPS X0, (DI)
	VMOVUPS X1, (DI)(R8*1)
	VMOVUPS X2, (DI)(R8*2)
	VMOVUPS X3, (DI)(R13*1)
	LEAQ (DI)(R8*4), DX
	VEXTRACTF128 $1, Y0, (DX)
	VEXTRACTF128 $1, Y1, (DX)(R8*1)
	VEXTRACTF128 $1, Y2, (DX)(R8*2)
	VEXTRACTF128 $1, Y3, (DX)(R13*1)
	LEAQ (DX)(R8*4), DI
	ADDQ $16, SI
	ADDQ $16, R10
	ADDQ $16, R11
	ADDQ $16, R12
	SUBQ $8, CX
	JNZ transpose4BF16AVX_loop
transpose4BF16AVX_done:
	VZEROUPPER
	RET
