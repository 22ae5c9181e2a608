package cpu

import "math"

// Pure-Go kernels: the "purego" variant and the fallback on other
// architectures. They share the blocked driver with the SIMD variants, so the
// same code paths (packing, edge tiles, parallel split) are tested with them.

func init() {
	registerKernel(&kernel{
		name: "purego", mr: 4, nr: 4, kc: 256, nc: 512,
		micro: microGo, dot: dotGo, dotBF16: dotBF16Go, axpy: axpyGo,
		tr4: transposeGo, tr4bf: transposeBF16Go,
		expf: expfGo, smMax: softmaxMaxGo, smExpSum: softmaxExpSumGo, smExp: softmaxExpGo,
		scal: scalGo, silu: siluMulGo,
		dsScale: dsScaleGo, maskedClean: maskedCleanGo, swigluBwd: swigluBwdGo,
	})
}

// microGo is the 4×4 micro-kernel: 16 scalar accumulators (Go does not
// vectorize, so a larger tile only spills). A is read through strides like
// the assembly kernels.
func microGo(a, b, c []float32, k, ldc int, load bool, ars, acs int) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	var c20, c21, c22, c23, c30, c31, c32, c33 float32
	a = a[:3*ars+(k-1)*acs+1]
	b = b[:4*k]
	for p := 0; p < k; p++ {
		o := p * acs
		a0, a1, a2, a3 := a[o], a[o+ars], a[o+2*ars], a[o+3*ars]
		bp := (*[4]float32)(b[4*p:])
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	r0 := c[0:4:4]
	r1 := c[ldc : ldc+4 : ldc+4]
	r2 := c[2*ldc : 2*ldc+4 : 2*ldc+4]
	r3 := c[3*ldc : 3*ldc+4 : 3*ldc+4]
	if load {
		c00 += r0[0]
		c01 += r0[1]
		c02 += r0[2]
		c03 += r0[3]
		c10 += r1[0]
		c11 += r1[1]
		c12 += r1[2]
		c13 += r1[3]
		c20 += r2[0]
		c21 += r2[1]
		c22 += r2[2]
		c23 += r2[3]
		c30 += r3[0]
		c31 += r3[1]
		c32 += r3[2]
		c33 += r3[3]
	}
	r0[0], r0[1], r0[2], r0[3] = c00, c01, c02, c03
	r1[0], r1[1], r1[2], r1[3] = c10, c11, c12, c13
	r2[0], r2[1], r2[2], r2[3] = c20, c21, c22, c23
	r3[0], r3[1], r3[2], r3[3] = c30, c31, c32, c33
}

// dotGo uses four partial sums to break the add dependency chain.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+3 < len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotBF16Go(a []float32, b []uint16) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+3 < len(a); i += 4 {
		s0 += a[i] * math.Float32frombits(uint32(b[i])<<16)
		s1 += a[i+1] * math.Float32frombits(uint32(b[i+1])<<16)
		s2 += a[i+2] * math.Float32frombits(uint32(b[i+2])<<16)
		s3 += a[i+3] * math.Float32frombits(uint32(b[i+3])<<16)
	}
	for ; i < len(a); i++ {
		s0 += a[i] * math.Float32frombits(uint32(b[i])<<16)
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}
