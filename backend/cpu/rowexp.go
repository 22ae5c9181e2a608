package cpu

import (
	"math"

	"github.com/darwinlm/darwinlm-go/internal/fastmath"
)

// Row kernels built on the float32 exp. The pure-Go twins below define the
// results bit for bit: they repeat nn's float32 softmax and SwiGLU loops
// (fastmath.Expf, the same operation order, a float64 softmax normaliser
// added in index order), and the SIMD variants (exp_amd64.s) reproduce them
// exactly, so every variant gives identical bits.

// SoftmaxCausalRow turns row[0..last] into softmax(scale·row[0..last]) and
// zeroes row[last+1:] (one row of causal attention scores).
func (c *CPU) SoftmaxCausalRow(row []float32, last int, scale float32) {
	softmaxCausalRow(c.kern, row, last, scale)
}

// Expf writes dst[i] = fastmath.Expf(src[i]) (bitwise) with this backend's
// variant; dst may alias src.
func (c *CPU) Expf(dst, src []float32) { c.kern.expf(dst[:len(src)], src) }

// SiLUMul writes out[i] = silu(gate[i])·up[i] for i < len(gate); out may
// alias gate or up.
func (c *CPU) SiLUMul(out, gate, up []float32) { c.kern.siluMul(out, gate, up) }

func softmaxCausalRow(k *kernel, row []float32, last int, scale float32) {
	x := row[:last+1]
	mx := k.smMax(x, scale)
	sum := k.smExpSum(x, mx)
	k.scal(x, float32(1/sum))
	clear(row[last+1:])
}

func (k *kernel) siluMul(out, gate, up []float32) {
	n := len(gate)
	k.silu(out[:n], gate, up[:n])
}

// Expf writes dst[i] = fastmath.Expf(src[i]) (bitwise) with the best variant.
func Expf(dst, src []float32) { bestRows().expf(dst[:len(src)], src) }

func expfGo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = fastmath.Expf(v)
	}
}

// softmaxMaxGo scales x in place and returns its maximum (-Inf if empty;
// NaNs are skipped).
func softmaxMaxGo(x []float32, scale float32) float32 {
	mx := float32(math.Inf(-1))
	return softmaxMaxTail(x, scale, mx)
}

func softmaxMaxTail(x []float32, scale, mx float32) float32 {
	for j := range x {
		x[j] *= scale
		if x[j] > mx {
			mx = x[j]
		}
	}
	return mx
}

// softmaxExpSumGo replaces x[j] by exp(x[j]−mx) and returns their float64
// sum, added in index order.
func softmaxExpSumGo(x []float32, mx float32) float64 { return softmaxExpSumTail(x, mx, 0) }

func softmaxExpSumTail(x []float32, mx float32, sum float64) float64 {
	for j := range x {
		e := fastmath.Expf(x[j] - mx)
		x[j] = e
		sum += float64(e)
	}
	return sum
}

func scalGo(x []float32, s float32) {
	for j := range x {
		x[j] *= s
	}
}

func siluMulGo(out, gate, up []float32) {
	n := len(gate)
	out, up = out[:n], up[:n]
	for i, g := range gate {
		out[i] = g / (1 + fastmath.Expf(-g)) * up[i]
	}
}
