//go:build amd64 && !purego

#include "textflag.h"

// func adamwAsm(w, gr, m, v *float32, n int, c *backend.AdamWStep) bool
// Eight lanes of adamwGo per iteration: the same float32 operations in the
// same order (no FMA), so the results are bitwise adamwGo's.
TEXT ·adamwAsm(SB), NOSPLIT, $0-49
	MOVQ w+0(FP), DI
	MOVQ gr+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ c+40(FP), AX
	VBROADCASTSS 0(AX), Y8   // decay
	VBROADCASTSS 4(AX), Y9   // β1
	VBROADCASTSS 8(AX), Y10  // 1-β1
	VBROADCASTSS 12(AX), Y11 // β2
	VBROADCASTSS 16(AX), Y12 // 1-β2
	VBROADCASTSS 20(AX), Y13 // √(1-β2ᵗ)
	VBROADCASTSS 24(AX), Y14 // eps
	VBROADCASTSS 28(AX), Y15 // -lr/(1-β1ᵗ)
	VXORPS Y7, Y7, Y7        // Σ (g-g): NaN iff some g is not finite
	TESTQ CX, CX
	JEQ done
loop:
	VMOVUPS (SI), Y0         // g
	VMULPS (DI), Y8, Y3      // w·decay
	VMULPS (R8), Y9, Y1      // m·β1
	VMULPS Y10, Y0, Y4       // g·(1-β1)
	VADDPS Y4, Y1, Y1        // m
	VMULPS (R9), Y11, Y2     // v·β2
	VMULPS Y0, Y0, Y5        // g·g
	VMULPS Y12, Y5, Y5       // ·(1-β2)
	VADDPS Y5, Y2, Y2        // v
	VSQRTPS Y2, Y5           // √v
	VDIVPS Y13, Y5, Y5       // /√(1-β2ᵗ)
	VADDPS Y14, Y5, Y5       // +eps
	VMULPS Y15, Y1, Y6       // -step·m
	VDIVPS Y5, Y6, Y6        // /den
	VADDPS Y6, Y3, Y3        // w
	VSUBPS Y0, Y0, Y4
	VADDPS Y4, Y7, Y7
	VMOVUPS Y1, (R8)
	VMOVUPS Y2, (R9)
	VMOVUPS Y3, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JNZ loop
done:
	// ok = no lane of Y7 is NaN
	VCMPPS $3, Y7, Y7, Y7    // unordered: NaN lanes → all ones
	VMOVMSKPS Y7, AX
	TESTL AX, AX
	SETEQ ret+48(FP)
	VZEROUPPER
	RET
