//go:build amd64 && !purego

#include "textflag.h"

// func dotAVX512(a, b *float32, n int) float32
// n must be a multiple of 16; the caller adds the scalar tail.
TEXT ·dotAVX512(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ CX, $64
	JLT dot512_tail
dot512_loop64:
	VMOVUPS (SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVUPS 128(SI), Z6
	VMOVUPS 192(SI), Z7
	VFMADD231PS (DI), Z4, Z0
	VFMADD231PS 64(DI), Z5, Z1
	VFMADD231PS 128(DI), Z6, Z2
	VFMADD231PS 192(DI), Z7, Z3
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $64, CX
	CMPQ CX, $64
	JGE dot512_loop64
dot512_tail:
	TESTQ CX, CX
	JEQ dot512_reduce
dot512_loop16:
	VMOVUPS (SI), Z4
	VFMADD231PS (DI), Z4, Z0
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ dot512_loop16
dot512_reduce:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func dotAVX2(a, b *float32, n int) float32
// n must be a multiple of 16. Eight ymm accumulators stand for the four zmm
// of the AVX-512 version (Y2q, Y2q+1 = low, high half of Zq) and the
// reduction repeats its order, so both give bitwise identical sums.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	CMPQ CX, $64
	JLT dotAVX2_tail
dotAVX2_loop64:
	VMOVUPS 0(DI), Y8
	VFMADD231PS 0(SI), Y8, Y0
	VMOVUPS 32(DI), Y9
	VFMADD231PS 32(SI), Y9, Y1
	VMOVUPS 64(DI), Y10
	VFMADD231PS 64(SI), Y10, Y2
	VMOVUPS 96(DI), Y11
	VFMADD231PS 96(SI), Y11, Y3
	VMOVUPS 128(DI), Y12
	VFMADD231PS 128(SI), Y12, Y4
	VMOVUPS 160(DI), Y13
	VFMADD231PS 160(SI), Y13, Y5
	VMOVUPS 192(DI), Y14
	VFMADD231PS 192(SI), Y14, Y6
	VMOVUPS 224(DI), Y15
	VFMADD231PS 224(SI), Y15, Y7
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $64, CX
	CMPQ CX, $64
	JGE dotAVX2_loop64
dotAVX2_tail:
	TESTQ CX, CX
	JEQ dotAVX2_reduce
dotAVX2_loop16:
	VMOVUPS 0(DI), Y8
	VFMADD231PS 0(SI), Y8, Y0
	VMOVUPS 32(DI), Y9
	VFMADD231PS 32(SI), Y9, Y1
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ dotAVX2_loop16
dotAVX2_reduce:
	// Z0+Z1, Z2+Z3, then their sum
	VADDPS Y2, Y0, Y0
	VADDPS Y3, Y1, Y1
	VADDPS Y6, Y4, Y4
	VADDPS Y7, Y5, Y5
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	// low 256 + high 256, then as in the AVX-512 version
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func axpyAVX512(alpha float32, x, y *float32, n int)
// y += alpha·x; n must be a multiple of 16.
TEXT ·axpyAVX512(SB), NOSPLIT, $0-32
	VBROADCASTSS alpha+0(FP), Z0
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MOVQ n+24(FP), CX
	CMPQ CX, $64
	JLT axpy512_tail
axpy512_loop64:
	VMOVUPS (DI), Z1
	VMOVUPS 64(DI), Z2
	VMOVUPS 128(DI), Z3
	VMOVUPS 192(DI), Z4
	VFMADD231PS (SI), Z0, Z1
	VFMADD231PS 64(SI), Z0, Z2
	VFMADD231PS 128(SI), Z0, Z3
	VFMADD231PS 192(SI), Z0, Z4
	VMOVUPS Z1, (DI)
	VMOVUPS Z2, 64(DI)
	VMOVUPS Z3, 128(DI)
	VMOVUPS Z4, 192(DI)
	ADDQ $256, SI
	ADDQ $256, DI
	SUBQ $64, CX
	CMPQ CX, $64
	JGE axpy512_loop64
axpy512_tail:
	TESTQ CX, CX
	JEQ axpy512_done
axpy512_loop16:
	VMOVUPS (DI), Z1
	VFMADD231PS (SI), Z0, Z1
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ axpy512_loop16
axpy512_done:
	VZEROUPPER
	RET

// func axpyAVX2(alpha float32, x, y *float32, n int)
// n must be a multiple of 8.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS alpha+0(FP), Y0
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MOVQ n+24(FP), CX
	CMPQ CX, $32
	JLT axpy2_tail
axpy2_loop32:
	VMOVUPS (DI), Y1
	VMOVUPS 32(DI), Y2
	VMOVUPS 64(DI), Y3
	VMOVUPS 96(DI), Y4
	VFMADD231PS (SI), Y0, Y1
	VFMADD231PS 32(SI), Y0, Y2
	VFMADD231PS 64(SI), Y0, Y3
	VFMADD231PS 96(SI), Y0, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE axpy2_loop32
axpy2_tail:
	TESTQ CX, CX
	JEQ axpy2_done
axpy2_loop8:
	VMOVUPS (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ axpy2_loop8
axpy2_done:
	VZEROUPPER
	RET

// func dotBF16AVX512(a *float32, b *uint16, n int) float32
// Σ a[i]·float32(b[i]) with b in bfloat16 (widened by a 16-bit shift);
// n must be a multiple of 16.
TEXT ·dotBF16AVX512(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	CMPQ CX, $64
	JLT dotbf512_tail
dotbf512_loop64:
	VPMOVZXWD (DI), Z4
	VPMOVZXWD 32(DI), Z5
	VPMOVZXWD 64(DI), Z6
	VPMOVZXWD 96(DI), Z7
	VPSLLD $16, Z4, Z4
	VPSLLD $16, Z5, Z5
	VPSLLD $16, Z6, Z6
	VPSLLD $16, Z7, Z7
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	VFMADD231PS 128(SI), Z6, Z2
	VFMADD231PS 192(SI), Z7, Z3
	ADDQ $256, SI
	ADDQ $128, DI
	SUBQ $64, CX
	CMPQ CX, $64
	JGE dotbf512_loop64
dotbf512_tail:
	TESTQ CX, CX
	JEQ dotbf512_reduce
dotbf512_loop16:
	VPMOVZXWD (DI), Z4
	VPSLLD $16, Z4, Z4
	VFMADD231PS (SI), Z4, Z0
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JNZ dotbf512_loop16
dotbf512_reduce:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func dotBF16AVX2(a *float32, b *uint16, n int) float32
// n must be a multiple of 16. Eight ymm accumulators stand for the four zmm
// of the AVX-512 version (Y2q, Y2q+1 = low, high half of Zq) and the
// reduction repeats its order, so both give bitwise identical sums.
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	CMPQ CX, $64
	JLT dotBF16AVX2_tail
dotBF16AVX2_loop64:
	VPMOVZXWD 0(DI), Y8
	VPSLLD $16, Y8, Y8
	VFMADD231PS 0(SI), Y8, Y0
	VPMOVZXWD 16(DI), Y9
	VPSLLD $16, Y9, Y9
	VFMADD231PS 32(SI), Y9, Y1
	VPMOVZXWD 32(DI), Y10
	VPSLLD $16, Y10, Y10
	VFMADD231PS 64(SI), Y10, Y2
	VPMOVZXWD 48(DI), Y11
	VPSLLD $16, Y11, Y11
	VFMADD231PS 96(SI), Y11, Y3
	VPMOVZXWD 64(DI), Y12
	VPSLLD $16, Y12, Y12
	VFMADD231PS 128(SI), Y12, Y4
	VPMOVZXWD 80(DI), Y13
	VPSLLD $16, Y13, Y13
	VFMADD231PS 160(SI), Y13, Y5
	VPMOVZXWD 96(DI), Y14
	VPSLLD $16, Y14, Y14
	VFMADD231PS 192(SI), Y14, Y6
	VPMOVZXWD 112(DI), Y15
	VPSLLD $16, Y15, Y15
	VFMADD231PS 224(SI), Y15, Y7
	ADDQ $256, SI
	ADDQ $128, DI
	SUBQ $64, CX
	CMPQ CX, $64
	JGE dotBF16AVX2_loop64
dotBF16AVX2_tail:
	TESTQ CX, CX
	JEQ dotBF16AVX2_reduce
dotBF16AVX2_loop16:
	VPMOVZXWD 0(DI), Y8
	VPSLLD $16, Y8, Y8
	VFMADD231PS 0(SI), Y8, Y0
	VPMOVZXWD 16(DI), Y9
	VPSLLD $16, Y9, Y9
	VFMADD231PS 32(SI), Y9, Y1
	ADDQ $64, SI
	ADDQ $32, DI
	SUBQ $16, CX
	JNZ dotBF16AVX2_loop16
dotBF16AVX2_reduce:
	// Z0+Z1, Z2+Z3, then their sum
	VADDPS Y2, Y0, Y0
	VADDPS Y3, Y1, Y1
	VADDPS Y6, Y4, Y4
	VADDPS Y7, Y5, Y5
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	// low 256 + high 256, then as in the AVX-512 version
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func dsScaleAVX512(p, d *float32, n int, fs, scale float32)
// d[i] = (d[i] - fs) * p[i] * scale, rounded after each operation with the
// operands in the order of the Go loop p[i] * (d[i] - fs) * scale as the
// compiler emits it ((d-fs) first, so the same NaN propagates). n is a
// multiple of 16.
TEXT ·dsScaleAVX512(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVQ d+8(FP), DI
	MOVQ n+16(FP), CX
	VBROADCASTSS fs+24(FP), Z8
	VBROADCASTSS scale+28(FP), Z9
	TESTQ CX, CX
	JEQ dsscale_done
dsscale_loop:
	VMOVUPS (DI), Z0
	VSUBPS Z8, Z0, Z0
	VMULPS (SI), Z0, Z0
	VMULPS Z9, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ dsscale_loop
dsscale_done:
	VZEROUPPER
	RET

// func maskedCleanAVX512(p, d *float32, n int) bool
// Reports whether p[i] == 0 (either sign) and d[i] is finite for all i < n
// (a multiple of 16).
TEXT ·maskedCleanAVX512(SB), NOSPLIT, $0-25
	MOVQ p+0(FP), SI
	MOVQ d+8(FP), DI
	MOVQ n+16(FP), CX
	VPXORD Z8, Z8, Z8
	TESTQ CX, CX
	JEQ mclean_yes
mclean_loop:
	VMOVUPS (DI), Z1
	VCMPPS $0x04, (SI), Z8, K1
	VSUBPS Z1, Z1, Z2
	VCMPPS $0x03, Z2, Z2, K2
	KORW K1, K2, K1
	KORTESTW K1, K1
	JNZ mclean_no
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ mclean_loop
mclean_yes:
	MOVB $1, ret+24(FP)
	VZEROUPPER
	RET
mclean_no:
	MOVB $0, ret+24(FP)
	VZEROUPPER
	RET
