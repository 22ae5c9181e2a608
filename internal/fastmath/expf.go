// Package fastmath holds float32 math functions that are faster than the
// standard library's float64 ones and give the same bits on every platform.
package fastmath

import "math"

// Expf is a float32 exp within 2 ulp of math.Exp (tested) and about 1.7×
// faster than it through float64 (BenchmarkExpf). It is the scalar
// definition that the vectorized backend kernels reproduce bit for bit. Every
// product is converted to float32 explicitly so that no compiler fuses it
// into an FMA (arm64 would): the result is the same on every platform.
func Expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375 // ln 2 split so n*ln2hi is exact
		ln2lo = -2.12194440e-4
	)
	switch {
	case x > 88.72283:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	case x != x:
		return x
	}
	// x = n·ln2 + r, |r| ≤ ln2/2
	// Adding 1.5·2²³ rounds to an integer in the float32 mantissa.
	const magic = 12582912
	t := float32(x*log2e) + magic
	n := t - magic
	r := x - float32(n*ln2hi)
	r = r - float32(n*ln2lo)
	// Cephes expf polynomial for e^r on [-ln2/2, ln2/2].
	z := float32(r * r)
	p := float32(1.9875691500e-4 * r)
	p = float32((p+1.3981999507e-3)*r) + 8.3334519073e-3
	p = float32(p*r) + 4.1665795894e-2
	p = float32(p*r) + 1.6666665459e-1
	p = float32(p*r) + 5.0000001201e-1
	y := float32(p*z) + r + 1
	// Scale by 2^n in two steps so that subnormal results are reachable.
	ni := int32(math.Float32bits(t)) - 0x4b400000 // = n
	if ni > 127 {
		return float32(y*math.Float32frombits(uint32(127+127)<<23)) * 2
	}
	if ni < -126 {
		return float32(y*math.Float32frombits(uint32(ni+127+64)<<23)) * math.Float32frombits(uint32(127-64)<<23)
	}
	return float32(y * math.Float32frombits(uint32(ni+127)<<23))
}
