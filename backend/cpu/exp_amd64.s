//go:build amd64 && !purego

#include "textflag.h"

// Vectorized float32 exp and the row kernels built on it (softmax of one
// causal attention row, SiLU·up). The arithmetic repeats fastmath.Expf
// operation by operation: the same Cephes polynomial and range reduction,
// every product rounded on its own (VMULPS then VADDPS, no FMA), the same
// two-step scaling by 2^n, so each lane is bitwise the scalar result. Each
// constant is stored 16 times (64 bytes) so that it can be a full zmm or
// ymm memory operand.
//
// Functions handle n a multiple of the vector width (16 or 8); the Go
// wrappers finish the tail with the scalar twin.

#define C_LOG2E expfC<>+0(SB)
#define C_MAGIC expfC<>+64(SB)
#define C_LN2HI expfC<>+128(SB)
#define C_LN2LO expfC<>+192(SB)
#define C_P0 expfC<>+256(SB)
#define C_P1 expfC<>+320(SB)
#define C_P2 expfC<>+384(SB)
#define C_P3 expfC<>+448(SB)
#define C_P4 expfC<>+512(SB)
#define C_P5 expfC<>+576(SB)
#define C_ONE expfC<>+640(SB)
#define C_HI expfC<>+704(SB)
#define C_LO expfC<>+768(SB)
#define C_I127 expfC<>+832(SB)
#define C_I254 expfC<>+896(SB)
#define C_I191 expfC<>+960(SB)
#define C_IM126 expfC<>+1024(SB)
#define C_TWO expfC<>+1088(SB)
#define C_S2LO expfC<>+1152(SB)
#define C_INF expfC<>+1216(SB)
#define C_SIGN expfC<>+1280(SB)
#define C_NINF expfC<>+1344(SB)
#define C_FLO expfC<>+1408(SB)
#define C_FHI expfC<>+1472(SB)

// LOG2E
DATA expfC<>+0(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+8(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+16(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+24(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+32(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+40(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+48(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expfC<>+56(SB)/8, $0x3fb8aa3b3fb8aa3b
// MAGIC
DATA expfC<>+64(SB)/8, $0x4b4000004b400000
DATA expfC<>+72(SB)/8, $0x4b4000004b400000
DATA expfC<>+80(SB)/8, $0x4b4000004b400000
DATA expfC<>+88(SB)/8, $0x4b4000004b400000
DATA expfC<>+96(SB)/8, $0x4b4000004b400000
DATA expfC<>+104(SB)/8, $0x4b4000004b400000
DATA expfC<>+112(SB)/8, $0x4b4000004b400000
DATA expfC<>+120(SB)/8, $0x4b4000004b400000
// LN2HI
DATA expfC<>+128(SB)/8, $0x3f3180003f318000
DATA expfC<>+136(SB)/8, $0x3f3180003f318000
DATA expfC<>+144(SB)/8, $0x3f3180003f318000
DATA expfC<>+152(SB)/8, $0x3f3180003f318000
DATA expfC<>+160(SB)/8, $0x3f3180003f318000
DATA expfC<>+168(SB)/8, $0x3f3180003f318000
DATA expfC<>+176(SB)/8, $0x3f3180003f318000
DATA expfC<>+184(SB)/8, $0x3f3180003f318000
// LN2LO
DATA expfC<>+192(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+200(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+208(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+216(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+224(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+232(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+240(SB)/8, $0xb95e8083b95e8083
DATA expfC<>+248(SB)/8, $0xb95e8083b95e8083
// P0
DATA expfC<>+256(SB)/8, $0x3950696739506967
DATA expfC<>+264(SB)/8, $0x3950696739506967
DATA expfC<>+272(SB)/8, $0x3950696739506967
DATA expfC<>+280(SB)/8, $0x3950696739506967
DATA expfC<>+288(SB)/8, $0x3950696739506967
DATA expfC<>+296(SB)/8, $0x3950696739506967
DATA expfC<>+304(SB)/8, $0x3950696739506967
DATA expfC<>+312(SB)/8, $0x3950696739506967
// P1
DATA expfC<>+320(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+328(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+336(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+344(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+352(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+360(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+368(SB)/8, $0x3ab743ce3ab743ce
DATA expfC<>+376(SB)/8, $0x3ab743ce3ab743ce
// P2
DATA expfC<>+384(SB)/8, $0x3c0889083c088908
DATA expfC<>+392(SB)/8, $0x3c0889083c088908
DATA expfC<>+400(SB)/8, $0x3c0889083c088908
DATA expfC<>+408(SB)/8, $0x3c0889083c088908
DATA expfC<>+416(SB)/8, $0x3c0889083c088908
DATA expfC<>+424(SB)/8, $0x3c0889083c088908
DATA expfC<>+432(SB)/8, $0x3c0889083c088908
DATA expfC<>+440(SB)/8, $0x3c0889083c088908
// P3
DATA expfC<>+448(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+456(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+464(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+472(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+480(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+488(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+496(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expfC<>+504(SB)/8, $0x3d2aa9c13d2aa9c1
// P4
DATA expfC<>+512(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+520(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+528(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+536(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+544(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+552(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+560(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expfC<>+568(SB)/8, $0x3e2aaaaa3e2aaaaa
// P5
DATA expfC<>+576(SB)/8, $0x3f0000003f000000
DATA expfC<>+584(SB)/8, $0x3f0000003f000000
DATA expfC<>+592(SB)/8, $0x3f0000003f000000
DATA expfC<>+600(SB)/8, $0x3f0000003f000000
DATA expfC<>+608(SB)/8, $0x3f0000003f000000
DATA expfC<>+616(SB)/8, $0x3f0000003f000000
DATA expfC<>+624(SB)/8, $0x3f0000003f000000
DATA expfC<>+632(SB)/8, $0x3f0000003f000000
// ONE
DATA expfC<>+640(SB)/8, $0x3f8000003f800000
DATA expfC<>+648(SB)/8, $0x3f8000003f800000
DATA expfC<>+656(SB)/8, $0x3f8000003f800000
DATA expfC<>+664(SB)/8, $0x3f8000003f800000
DATA expfC<>+672(SB)/8, $0x3f8000003f800000
DATA expfC<>+680(SB)/8, $0x3f8000003f800000
DATA expfC<>+688(SB)/8, $0x3f8000003f800000
DATA expfC<>+696(SB)/8, $0x3f8000003f800000
// HI
DATA expfC<>+704(SB)/8, $0x42b1721742b17217
DATA expfC<>+712(SB)/8, $0x42b1721742b17217
DATA expfC<>+720(SB)/8, $0x42b1721742b17217
DATA expfC<>+728(SB)/8, $0x42b1721742b17217
DATA expfC<>+736(SB)/8, $0x42b1721742b17217
DATA expfC<>+744(SB)/8, $0x42b1721742b17217
DATA expfC<>+752(SB)/8, $0x42b1721742b17217
DATA expfC<>+760(SB)/8, $0x42b1721742b17217
// LO
DATA expfC<>+768(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+776(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+784(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+792(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+800(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+808(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+816(SB)/8, $0xc2cff1b4c2cff1b4
DATA expfC<>+824(SB)/8, $0xc2cff1b4c2cff1b4
// I127
DATA expfC<>+832(SB)/8, $0x0000007f0000007f
DATA expfC<>+840(SB)/8, $0x0000007f0000007f
DATA expfC<>+848(SB)/8, $0x0000007f0000007f
DATA expfC<>+856(SB)/8, $0x0000007f0000007f
DATA expfC<>+864(SB)/8, $0x0000007f0000007f
DATA expfC<>+872(SB)/8, $0x0000007f0000007f
DATA expfC<>+880(SB)/8, $0x0000007f0000007f
DATA expfC<>+888(SB)/8, $0x0000007f0000007f
// I254
DATA expfC<>+896(SB)/8, $0x000000fe000000fe
DATA expfC<>+904(SB)/8, $0x000000fe000000fe
DATA expfC<>+912(SB)/8, $0x000000fe000000fe
DATA expfC<>+920(SB)/8, $0x000000fe000000fe
DATA expfC<>+928(SB)/8, $0x000000fe000000fe
DATA expfC<>+936(SB)/8, $0x000000fe000000fe
DATA expfC<>+944(SB)/8, $0x000000fe000000fe
DATA expfC<>+952(SB)/8, $0x000000fe000000fe
// I191
DATA expfC<>+960(SB)/8, $0x000000bf000000bf
DATA expfC<>+968(SB)/8, $0x000000bf000000bf
DATA expfC<>+976(SB)/8, $0x000000bf000000bf
DATA expfC<>+984(SB)/8, $0x000000bf000000bf
DATA expfC<>+992(SB)/8, $0x000000bf000000bf
DATA expfC<>+1000(SB)/8, $0x000000bf000000bf
DATA expfC<>+1008(SB)/8, $0x000000bf000000bf
DATA expfC<>+1016(SB)/8, $0x000000bf000000bf
// IM126
DATA expfC<>+1024(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1032(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1040(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1048(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1056(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1064(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1072(SB)/8, $0xffffff82ffffff82
DATA expfC<>+1080(SB)/8, $0xffffff82ffffff82
// TWO
DATA expfC<>+1088(SB)/8, $0x4000000040000000
DATA expfC<>+1096(SB)/8, $0x4000000040000000
DATA expfC<>+1104(SB)/8, $0x4000000040000000
DATA expfC<>+1112(SB)/8, $0x4000000040000000
DATA expfC<>+1120(SB)/8, $0x4000000040000000
DATA expfC<>+1128(SB)/8, $0x4000000040000000
DATA expfC<>+1136(SB)/8, $0x4000000040000000
DATA expfC<>+1144(SB)/8, $0x4000000040000000
// S2LO
DATA expfC<>+1152(SB)/8, $0x1f8000001f800000
DATA expfC<>+1160(SB)/8, $0x1f8000001f800000
DATA expfC<>+1168(SB)/8, $0x1f8000001f800000
DATA expfC<>+1176(SB)/8, $0x1f8000001f800000
DATA expfC<>+1184(SB)/8, $0x1f8000001f800000
DATA expfC<>+1192(SB)/8, $0x1f8000001f800000
DATA expfC<>+1200(SB)/8, $0x1f8000001f800000
DATA expfC<>+1208(SB)/8, $0x1f8000001f800000
// INF
DATA expfC<>+1216(SB)/8, $0x7f8000007f800000
DATA expfC<>+1224(SB)/8, $0x7f8000007f800000
DATA expfC<>+1232(SB)/8, $0x7f8000007f800000
DATA expfC<>+1240(SB)/8, $0x7f8000007f800000
DATA expfC<>+1248(SB)/8, $0x7f8000007f800000
DATA expfC<>+1256(SB)/8, $0x7f8000007f800000
DATA expfC<>+1264(SB)/8, $0x7f8000007f800000
DATA expfC<>+1272(SB)/8, $0x7f8000007f800000
// SIGN
DATA expfC<>+1280(SB)/8, $0x8000000080000000
DATA expfC<>+1288(SB)/8, $0x8000000080000000
DATA expfC<>+1296(SB)/8, $0x8000000080000000
DATA expfC<>+1304(SB)/8, $0x8000000080000000
DATA expfC<>+1312(SB)/8, $0x8000000080000000
DATA expfC<>+1320(SB)/8, $0x8000000080000000
DATA expfC<>+1328(SB)/8, $0x8000000080000000
DATA expfC<>+1336(SB)/8, $0x8000000080000000
// NINF
DATA expfC<>+1344(SB)/8, $0xff800000ff800000
DATA expfC<>+1352(SB)/8, $0xff800000ff800000
DATA expfC<>+1360(SB)/8, $0xff800000ff800000
DATA expfC<>+1368(SB)/8, $0xff800000ff800000
DATA expfC<>+1376(SB)/8, $0xff800000ff800000
DATA expfC<>+1384(SB)/8, $0xff800000ff800000
DATA expfC<>+1392(SB)/8, $0xff800000ff800000
DATA expfC<>+1400(SB)/8, $0xff800000ff800000
// FLO = -87, FHI = 88: inputs of the fast path (normal results, no special case)
DATA expfC<>+1408(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1416(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1424(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1432(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1440(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1448(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1456(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1464(SB)/8, $0xc2ae0000c2ae0000
DATA expfC<>+1472(SB)/8, $0x42b0000042b00000
DATA expfC<>+1480(SB)/8, $0x42b0000042b00000
DATA expfC<>+1488(SB)/8, $0x42b0000042b00000
DATA expfC<>+1496(SB)/8, $0x42b0000042b00000
DATA expfC<>+1504(SB)/8, $0x42b0000042b00000
DATA expfC<>+1512(SB)/8, $0x42b0000042b00000
DATA expfC<>+1520(SB)/8, $0x42b0000042b00000
DATA expfC<>+1528(SB)/8, $0x42b0000042b00000
GLOBL expfC<>(SB), RODATA|NOPTR, $1536

// TAILMASK, for the row kernels with a masked tail (the M variants), sets
// K5 to the low n mod 16 bits and CX to n rounded down to a multiple of 16;
// it uses AX.
#define TAILMASK \
	MOVQ n+8(FP), CX; \
	ANDQ $15, CX; \
	MOVL $1, AX; \
	SHLL CX, AX; \
	DECL AX; \
	KMOVW AX, K5; \
	MOVQ n+8(FP), CX; \
	ANDQ $-16, CX

// EXPF512_INRANGE sets the carry flag when every lane of Z0 lies in
// [-87, 88] (so no NaN): then exp needs none of EXPF512's special cases (2^n
// is a normal number, the second scale factor is 1 and no lane is
// overflow, underflow or NaN), and EXPF512_FAST gives its bits with 15
// fewer instructions. Uses K4.
#define EXPF512_INRANGE \
	VCMPPS $0x1d, C_FLO, Z0, K4; \
	VCMPPS $0x12, C_FHI, Z0, K4, K4; \
	KORTESTW K4, K4

// EXPF_POLY(x, n, t, r, rr, p) is the start that every expf body shares:
// n = round(x·log2e) (as an int32 once the magic bias is off), r = x − n·ln2
// (in two parts), rr = r², p = 1 + r + rr·P(r) and t = n + 127 (the biased
// exponent of 2^n). x is kept.
#define EXPF_POLY(x, n, t, r, rr, p) \
	VMULPS C_LOG2E, x, n; \
	VADDPS C_MAGIC, n, n; \
	VSUBPS C_MAGIC, n, t; \
	VMULPS C_LN2HI, t, r; \
	VSUBPS r, x, r; \
	VMULPS C_LN2LO, t, t; \
	VSUBPS t, r, r; \
	VMULPS r, r, rr; \
	VMULPS C_P0, r, p; \
	VADDPS C_P1, p, p; \
	VMULPS r, p, p; \
	VADDPS C_P2, p, p; \
	VMULPS r, p, p; \
	VADDPS C_P3, p, p; \
	VMULPS r, p, p; \
	VADDPS C_P4, p, p; \
	VMULPS r, p, p; \
	VADDPS C_P5, p, p; \
	VMULPS rr, p, p; \
	VADDPS r, p, p; \
	VADDPS C_ONE, p, p; \
	VPSUBD C_MAGIC, n, n; \
	VPADDD C_I127, n, t

// EXPF512_FAST is EXPF512 for Z0 in [-87, 88] (see EXPF512_INRANGE).
#define EXPF512_FAST \
	EXPF_POLY(Z0, Z2, Z3, Z4, Z5, Z6); \
	VPSLLD $23, Z3, Z3; \
	VMULPS Z3, Z6, Z6

// EXPF512 computes Z6 = expf(Z0); it uses Z1-Z7 and K1-K3, Z0 is kept.
#define EXPF512 \
	EXPF_POLY(Z0, Z2, Z3, Z4, Z5, Z6); \
	VMOVUPS C_ONE, Z5; \
	VMOVDQU32 C_IM126, Z7; \
	VPCMPGTD C_I127, Z2, K1; \
	VPCMPGTD Z2, Z7, K2; \
	VMOVDQU32 C_I254, K1, Z3; \
	VMOVUPS C_TWO, K1, Z5; \
	VPADDD C_I191, Z2, K2, Z3; \
	VMOVUPS C_S2LO, K2, Z5; \
	VPSLLD $23, Z3, Z3; \
	VMULPS Z3, Z6, Z6; \
	VMULPS Z5, Z6, Z6; \
	VCMPPS $0x1e, C_HI, Z0, K1; \
	VCMPPS $0x11, C_LO, Z0, K2; \
	VCMPPS $3, Z0, Z0, K3; \
	VMOVUPS C_INF, K1, Z6; \
	VPXORD Z6, Z6, K2, Z6; \
	VMOVUPS Z0, K3, Z6

// EXPF512_ANY is EXPF512, by EXPF512_FAST where every lane allows it; slow
// and done are labels of the call site, unique in its function.
#define EXPF512_ANY(slow, done) \
	EXPF512_INRANGE; \
	JCC slow; \
	EXPF512_FAST; \
	JMP done; \
slow: \
	EXPF512; \
done:

// EXPF256 computes Y6 = expf(Y0); it uses Y1-Y7, Y0 is kept.
#define EXPF256 \
	EXPF_POLY(Y0, Y2, Y3, Y4, Y5, Y6); \
	VPADDD C_I191, Y2, Y4; \
	VPCMPGTD C_I127, Y2, Y5; \
	VMOVDQU C_IM126, Y7; \
	VPCMPGTD Y2, Y7, Y7; \
	VBLENDVPS Y5, C_I254, Y3, Y3; \
	VBLENDVPS Y7, Y4, Y3, Y3; \
	VMOVUPS C_ONE, Y4; \
	VBLENDVPS Y5, C_TWO, Y4, Y4; \
	VBLENDVPS Y7, C_S2LO, Y4, Y4; \
	VPSLLD $23, Y3, Y3; \
	VMULPS Y3, Y6, Y6; \
	VMULPS Y4, Y6, Y6; \
	VCMPPS $0x1e, C_HI, Y0, Y5; \
	VBLENDVPS Y5, C_INF, Y6, Y6; \
	VCMPPS $0x11, C_LO, Y0, Y5; \
	VANDNPS Y6, Y5, Y6; \
	VCMPPS $3, Y0, Y0, Y5; \
	VBLENDVPS Y5, Y0, Y6, Y6

// HMAX256 leaves in X8 the max of Y8's lanes (X1 is scratch).
#define HMAX256 \
	VEXTRACTF128 $1, Y8, X1; \
	VMAXPS X1, X8, X8; \
	VPERMILPS $0x4e, X8, X1; \
	VMAXPS X1, X8, X8; \
	VPERMILPS $0xb1, X8, X1; \
	VMAXPS X1, X8, X8

// SUM1 adds the float32 at off(DI), widened, to the float64 in X8.
#define SUM1(off) \
	VCVTSS2SD off(DI), X10, X11; \
	VADDSD X11, X8, X8

// func expfAVX512(dst, src *float32, n int)
TEXT ·expfAVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JEQ expf512_done
expf512_loop:
	VMOVUPS (SI), Z0
	EXPF512_ANY(expf512_slow, expf512_store)
	VMOVUPS Z6, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ expf512_loop
expf512_done:
	VZEROUPPER
	RET

// func expfAVX2(dst, src *float32, n int)
TEXT ·expfAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JEQ expf2_done
expf2_loop:
	VMOVUPS (SI), Y0
	EXPF256
	VMOVUPS Y6, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ expf2_loop
expf2_done:
	VZEROUPPER
	RET

// func softmaxMaxAVX2(x *float32, n int, scale float32) float32
// x[i] *= scale, returns max(-Inf, x[i]...) (NaN lanes are skipped, as the
// Go loop's x > mx does).
TEXT ·softmaxMaxAVX2(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS scale+16(FP), Y9
	VMOVUPS C_NINF, Y8
	TESTQ CX, CX
	JEQ smax2_reduce
smax2_loop:
	VMULPS (DI), Y9, Y0
	VMOVUPS Y0, (DI)
	VMAXPS Y8, Y0, Y8
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ smax2_loop
smax2_reduce:
	HMAX256
	VMOVSS X8, ret+24(FP)
	VZEROUPPER
	RET

// func softmaxExpSumAVX512(x *float32, n int, mx float32) float64
// x[i] = expf(x[i] - mx); returns the float64 sum of the new x[i] added in
// index order (a serial chain, as in the Go loop).
TEXT ·softmaxExpSumAVX512(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS mx+16(FP), Z9
	VXORPD X8, X8, X8
	TESTQ CX, CX
	JEQ sexp512_done
sexp512_loop:
	VMOVUPS (DI), Z0
	VSUBPS Z9, Z0, Z0
	EXPF512_ANY(sexp512_slow, sexp512_store)
	VMOVUPS Z6, (DI)
	SUM1(0)
	SUM1(4)
	SUM1(8)
	SUM1(12)
	SUM1(16)
	SUM1(20)
	SUM1(24)
	SUM1(28)
	SUM1(32)
	SUM1(36)
	SUM1(40)
	SUM1(44)
	SUM1(48)
	SUM1(52)
	SUM1(56)
	SUM1(60)
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ sexp512_loop
sexp512_done:
	VMOVSD X8, ret+24(FP)
	VZEROUPPER
	RET

// func softmaxExpSumAVX2(x *float32, n int, mx float32) float64
TEXT ·softmaxExpSumAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS mx+16(FP), Y9
	VXORPD X8, X8, X8
	TESTQ CX, CX
	JEQ sexp2_done
sexp2_loop:
	VMOVUPS (DI), Y0
	VSUBPS Y9, Y0, Y0
	EXPF256
	VMOVUPS Y6, (DI)
	SUM1(0)
	SUM1(4)
	SUM1(8)
	SUM1(12)
	SUM1(16)
	SUM1(20)
	SUM1(24)
	SUM1(28)
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ sexp2_loop
sexp2_done:
	VMOVSD X8, ret+24(FP)
	VZEROUPPER
	RET

// func softmaxExpAVX2(x *float32, n int, mx float32)
// x[i] = expf(x[i] - mx): softmaxExpSumAVX2 without the sum (rows whose
// sums are added elsewhere, several chains at once).
TEXT ·softmaxExpAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS mx+16(FP), Y9
	TESTQ CX, CX
	JEQ sexpn2_done
sexpn2_loop:
	VMOVUPS (DI), Y0
	VSUBPS Y9, Y0, Y0
	EXPF256
	VMOVUPS Y6, (DI)
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ sexpn2_loop
sexpn2_done:
	VZEROUPPER
	RET

// func scalAVX2(x *float32, n int, s float32)
// x[i] *= s.
TEXT ·scalAVX2(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS s+16(FP), Y9
	TESTQ CX, CX
	JEQ scal2_done
scal2_loop:
	VMULPS (DI), Y9, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ scal2_loop
scal2_done:
	VZEROUPPER
	RET

// func siluMulAVX512(out, gate, up *float32, n int)
// out[i] = gate[i] / (1 + expf(-gate[i])) * up[i].
TEXT ·siluMulAVX512(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	TESTQ CX, CX
	JEQ silu512_done
silu512_loop:
	VMOVUPS (SI), Z10
	VPXORD C_SIGN, Z10, Z0
	EXPF512_ANY(silu512_slow, silu512_exp)
	VADDPS C_ONE, Z6, Z6
	VDIVPS Z6, Z10, Z6
	VMULPS (DX), Z6, Z6
	VMOVUPS Z6, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ silu512_loop
silu512_done:
	VZEROUPPER
	RET

// func siluMulAVX2(out, gate, up *float32, n int)
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), CX
	TESTQ CX, CX
	JEQ silu2_done
silu2_loop:
	VMOVUPS (SI), Y10
	VXORPS C_SIGN, Y10, Y0
	EXPF256
	VADDPS C_ONE, Y6, Y6
	VDIVPS Y6, Y10, Y6
	VMULPS (DX), Y6, Y6
	VMOVUPS Y6, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ silu2_loop
silu2_done:
	VZEROUPPER
	RET

// func swigluBwdAVX512(dg, du, dout, gate, up *float32, n int)
// The SwiGLU backward of nn.SwiGLUBackward for n a multiple of 16, with
// σ = 1/(1 + expf(−g)): dg = dy·u·σ·(1 + g·(1−σ)), du = dy·g·σ, every
// operation rounded in float32 with the operands in the order the Go loop
// compiles to (so NaNs propagate alike).
TEXT ·swigluBwdAVX512(SB), NOSPLIT, $0-48
	MOVQ dg+0(FP), DI
	MOVQ du+8(FP), R8
	MOVQ dout+16(FP), SI
	MOVQ gate+24(FP), DX
	MOVQ up+32(FP), R9
	MOVQ n+40(FP), CX
	VMOVUPS C_ONE, Z11
	TESTQ CX, CX
	JEQ swbwd_done
swbwd_loop:
	VMOVUPS (DX), Z10
	VPXORD C_SIGN, Z10, Z0
	EXPF512_ANY(swbwd_slow, swbwd_exp)
	VADDPS Z11, Z6, Z12
	VDIVPS Z12, Z11, Z13
	VMOVUPS (SI), Z15
	VMOVUPS (R9), Z14
	VMULPS Z15, Z14, Z14
	VMULPS Z13, Z14, Z14
	VSUBPS Z13, Z11, Z16
	VMULPS Z10, Z16, Z16
	VADDPS Z11, Z16, Z16
	VMULPS Z14, Z16, Z16
	VMOVUPS Z16, (DI)
	VMULPS Z10, Z15, Z17
	VMULPS Z13, Z17, Z17
	VMOVUPS Z17, (R8)
	ADDQ $64, DI
	ADDQ $64, R8
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R9
	SUBQ $16, CX
	JNZ swbwd_loop
swbwd_done:
	VZEROUPPER
	RET

// The AVX-512 softmax row kernels (the M variants) take any n: the last
// n mod 16 elements go through the same lane-wise arithmetic under a mask
// (K5; TAILMASK at the top). Each does what its AVX2 namesake does.

// func softmaxMaxAVX512M(x *float32, n int, scale float32) float32
TEXT ·softmaxMaxAVX512M(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), DI
	TAILMASK
	VBROADCASTSS scale+16(FP), Z9
	VMOVUPS C_NINF, Z8
	TESTQ CX, CX
	JEQ smaxm_tail
smaxm_loop:
	VMULPS (DI), Z9, Z0
	VMOVUPS Z0, (DI)
	VMAXPS Z8, Z0, Z8
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ smaxm_loop
smaxm_tail:
	KORTESTW K5, K5
	JEQ smaxm_reduce
	VMOVUPS.Z (DI), K5, Z0
	VMULPS Z0, Z9, Z0
	VMOVUPS Z0, K5, (DI)
	VMAXPS Z8, Z0, K5, Z8
smaxm_reduce:
	VEXTRACTF64X4 $1, Z8, Y1
	VMAXPS Y1, Y8, Y8
	HMAX256
	VMOVSS X8, ret+24(FP)
	VZEROUPPER
	RET

// func softmaxExpAVX512M(x *float32, n int, mx float32)
TEXT ·softmaxExpAVX512M(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	TAILMASK
	VBROADCASTSS mx+16(FP), Z9
	TESTQ CX, CX
	JEQ sexpm_tail
sexpm_loop:
	VMOVUPS (DI), Z0
	VSUBPS Z9, Z0, Z0
	EXPF512_ANY(sexpm_slow, sexpm_store)
	VMOVUPS Z6, (DI)
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ sexpm_loop
sexpm_tail:
	KORTESTW K5, K5
	JEQ sexpm_done
	VMOVAPS Z9, Z0
	VMOVUPS (DI), K5, Z0
	VSUBPS Z9, Z0, Z0
	EXPF512_ANY(sexpm_tslow, sexpm_tstore)
	VMOVUPS Z6, K5, (DI)
sexpm_done:
	VZEROUPPER
	RET

// func scalAVX512M(x *float32, n int, s float32)
TEXT ·scalAVX512M(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	TAILMASK
	VBROADCASTSS s+16(FP), Z9
	TESTQ CX, CX
	JEQ scalm_tail
scalm_loop:
	VMULPS (DI), Z9, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	SUBQ $16, CX
	JNZ scalm_loop
scalm_tail:
	KORTESTW K5, K5
	JEQ scalm_done
	VMOVUPS.Z (DI), K5, Z0
	VMULPS Z0, Z9, Z0
	VMOVUPS Z0, K5, (DI)
scalm_done:
	VZEROUPPER
	RET
