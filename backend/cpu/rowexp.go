package cpu

import (
	"fmt"
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

// SoftmaxCausalRows is SoftmaxCausalRow on n rows at once: row i is
// s[i*ld : i*ld+ld] with last = last0+i (consecutive queries of one head).
// Each row gets bitwise what SoftmaxCausalRow gives it; only the float64
// sums of up to eight rows run side by side (each in its own index order),
// since one row's sum is a serial chain bound by the add latency.
func (c *CPU) SoftmaxCausalRows(s []float32, ld, n, last0 int, scale float32) {
	if n <= 0 {
		return
	}
	if last0 < 0 || last0+n > ld || len(s) < (n-1)*ld+ld {
		panic(fmt.Sprintf("cpu: SoftmaxCausalRows: %d rows of %d (ld %d) from last %d", n, len(s), ld, last0))
	}
	softmaxCausalRows(c.kern, s, ld, n, last0, scale)
}

const smBlock = 8

func softmaxCausalRows(k *kernel, s []float32, ld, n, last0 int, scale float32) {
	var sum [smBlock]float64
	for i0 := 0; i0 < n; i0 += smBlock {
		nb := min(smBlock, n-i0)
		for i := 0; i < nb; i++ {
			x := s[(i0+i)*ld : (i0+i)*ld+last0+i0+i+1]
			k.smExp(x, k.smMax(x, scale))
		}
		// The first c = last0+i0+1 terms of every row side by side, then
		// each row's own tail (at most smBlock−1 more).
		c := last0 + i0 + 1
		if nb == smBlock {
			sum = sums8(s[i0*ld:], ld, c)
		} else {
			sum = [smBlock]float64{}
			c = 0
		}
		for i := 0; i < nb; i++ {
			row := s[(i0+i)*ld : (i0+i+1)*ld]
			last := last0 + i0 + i
			sm := sum[i]
			for _, e := range row[c : last+1] {
				sm += float64(e)
			}
			k.scal(row[:last+1], float32(1/sm))
			clear(row[last+1:])
		}
	}
}

// sums8 returns the float64 sums of x[i*ld : i*ld+c] for i < 8, each added
// in index order (eight independent chains).
func sums8(x []float32, ld, c int) (s [smBlock]float64) {
	x0, x1, x2, x3 := x[:c], x[ld:ld+c], x[2*ld:2*ld+c], x[3*ld:3*ld+c]
	x4, x5, x6, x7 := x[4*ld:4*ld+c], x[5*ld:5*ld+c], x[6*ld:6*ld+c], x[7*ld:7*ld+c]
	var s0, s1, s2, s3, s4, s5, s6, s7 float64
	for j := range x0 {
		s0 += float64(x0[j])
		s1 += float64(x1[j])
		s2 += float64(x2[j])
		s3 += float64(x3[j])
		s4 += float64(x4[j])
		s5 += float64(x5[j])
		s6 += float64(x6[j])
		s7 += float64(x7[j])
	}
	return [smBlock]float64{s0, s1, s2, s3, s4, s5, s6, s7}
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
func softmaxExpSumGo(x []float32, mx float32) float64 {
	var sum float64
	for j := range x {
		e := fastmath.Expf(x[j] - mx)
		x[j] = e
		sum += float64(e)
	}
	return sum
}

func softmaxExpGo(x []float32, mx float32) {
	for j := range x {
		x[j] = fastmath.Expf(x[j] - mx)
	}
}

// AttnDSScale writes d[j] = p[j]·(d[j] − fs)·scale for j < len(p), bitwise
// the Go loop (the elementwise half of the attention's dS = P ⊙ (dP − s)).
func (c *CPU) AttnDSScale(p, d []float32, fs, scale float32) { c.kern.dsScale(p, d, fs, scale) }

// AttnMaskedClean reports whether every p[j] is zero (either sign) and every
// d[j] finite, j < len(p): masked columns that add nothing to dS's row sum.
func (c *CPU) AttnMaskedClean(p, d []float32) bool { return c.kern.maskedClean(p, d) }

// SwiGLUBackward back-propagates out = silu(gate)·up for i < len(gate):
// with σ = 1/(1 + expf(−g)), dgate = dout·up·σ·(1 + g·(1−σ)) and
// dup = dout·g·σ, bitwise nn.SwiGLUBackward's float32 loop. dgate and dup
// must not alias the inputs.
func (c *CPU) SwiGLUBackward(dgate, dup, dout, gate, up []float32) {
	c.kern.swigluBwd(dgate, dup, dout, gate, up)
}

func swigluBwdGo(dg, du, dout, gate, up []float32) {
	n := len(gate)
	dg, du, dout, up = dg[:n], du[:n], dout[:n], up[:n]
	for i, g := range gate {
		sig := 1 / (1 + fastmath.Expf(-g))
		dy := dout[i]
		dg[i] = dy * up[i] * sig * (1 + g*(1-sig))
		du[i] = dy * g * sig
	}
}

func dsScaleGo(p, d []float32, fs, scale float32) {
	d = d[:len(p)]
	for j, pj := range p {
		d[j] = pj * (d[j] - fs) * scale
	}
}

func maskedCleanGo(p, d []float32) bool {
	d = d[:len(p)]
	for j, pj := range p {
		if pj != 0 || d[j]-d[j] != 0 {
			return false
		}
	}
	return true
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
