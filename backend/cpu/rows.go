package cpu

import (
	"math"
	"sync"

	"github.com/darwinlm/darwinlm-go/internal/fastmath"
)

// Row kernels for model code, dispatched to the best variant. They are
// deterministic for a given variant (fixed SIMD summation order).

var bestRows = sync.OnceValue(best)

// Dot returns Σ a[i]·b[i] over len(a); b must be at least as long.
func Dot(a, b []float32) float32 { return bestRows().dot(a, b) }

// Axpy computes y[i] += alpha·x[i] over len(x); y must be at least as long.
func Axpy(alpha float32, x, y []float32) { bestRows().axpy(alpha, x, y) }

// RMSNorm writes out[i] = x[i] / sqrt(mean(x²) + eps) · w[i].
// out may alias x.
func RMSNorm(out, x, w []float32, eps float32) {
	n := len(x)
	if n == 0 {
		return
	}
	ss := Dot(x, x)
	s := float32(1 / math.Sqrt(float64(ss)/float64(n)+float64(eps)))
	out, w = out[:n], w[:n]
	for i, v := range x {
		out[i] = v * s * w[i]
	}
}

// Softmax normalizes x in place; the max is subtracted for stability. It
// uses expf (within 2 ulp of exp), and sums in float64.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	mx := x[0]
	for _, v := range x[1:] {
		mx = max(mx, v)
	}
	var sum float64
	for i, v := range x {
		e := fastmath.Expf(v - mx)
		x[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// SiLUMul writes out[i] = silu(gate[i]) · up[i] (the SwiGLU MLP); out may
// alias gate or up.
func SiLUMul(out, gate, up []float32) { bestRows().siluMul(out, gate, up) }
