package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/internal/fastmath"
)

// sameBits reports whether a and b are the same float32, NaNs compared as
// equal to each other.
func sameBits(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

func expfInputs() []float32 {
	r := rand.New(rand.NewPCG(21, 22))
	in := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5,
		88.72283, 88.72284, 88.7228, 88.72, 89, 100, 1e30, float32(math.MaxFloat32),
		-103.97208, -103.97207, -103.9721, -103.97, -104, -87.3, -87.4, -88, -100, -102, -103.5,
		-1e30, -float32(math.MaxFloat32),
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -float32(math.NaN()),
		math.Float32frombits(0x7fc12345), math.Float32frombits(0xffa00001), math.Float32frombits(0x7f800001),
		math.Float32frombits(1), math.Float32frombits(0x80000001), math.Float32frombits(0x007fffff),
		0.34657359, -0.34657359, 0.6931472, -0.6931472, 1e-10, -1e-10, 1e-40, -1e-40}
	for i := 0; i < 1<<21; i++ {
		in = append(in, math.Float32frombits(r.Uint32()))
	}
	for i := 0; i < 1<<21; i++ {
		in = append(in, float32(-110+205*r.Float64()))
	}
	for i := 0; i < 1<<20; i++ { // subnormal and near-underflow results
		in = append(in, float32(-104+20*r.Float64()))
	}
	// Whole vectors inside the fast path's range [-87, 88], its ends and
	// their neighbours included (aligned, so vectors of 16 and 8 lanes hold
	// only one of them).
	for len(in)%16 != 0 {
		in = append(in, 0)
	}
	for _, v := range []float32{-87, 88, math.Nextafter32(-87, 0), math.Nextafter32(88, 0), math.Nextafter32(-87, -100), math.Nextafter32(88, 100)} {
		for i := 0; i < 16; i++ {
			in = append(in, v)
		}
	}
	for i := 0; i < 1<<20; i++ {
		in = append(in, float32(-87+175*r.Float64()))
	}
	for b := uint64(0); b < 1<<32; b += 1021 { // a sweep over all bit patterns
		in = append(in, math.Float32frombits(uint32(b)))
	}
	return in
}

func TestExpfBitwise(t *testing.T) {
	in := expfInputs()
	want := make([]float32, len(in))
	for i, v := range in {
		want[i] = fastmath.Expf(v)
	}
	for _, name := range Available() {
		kn := kernels[name]
		got := make([]float32, len(in))
		kn.expf(got, in)
		bad := 0
		for i := range in {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				if bad++; bad < 10 {
					t.Errorf("%s expf(%g [%#08x]) = %g [%#08x], fastmath.Expf %g [%#08x]", name, in[i], math.Float32bits(in[i]),
						got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		}
		// Odd lengths: vector body plus scalar tail at every offset.
		for n := 0; n < 70; n++ {
			got := make([]float32, n)
			kn.expf(got, in[len(in)-n:])
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[len(in)-n+i]) {
					t.Fatalf("%s expf n=%d [%d]: %g want %g", name, n, i, got[i], want[len(in)-n+i])
				}
			}
		}
		t.Logf("%s: %d inputs, %d mismatches", name, len(in), bad)
	}
}

// TestExpfAccuracy checks the vectorized expf against float64 math.Exp:
// within 2 ulp of the float32 result (for subnormal results, 2 units of the
// smallest subnormal).
func TestExpfAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	in := make([]float32, 1<<21)
	for i := range in {
		in[i] = float32(-104 + 193*r.Float64())
	}
	for _, name := range Available() {
		got := make([]float32, len(in))
		kernels[name].expf(got, in)
		for i, x := range in {
			want := math.Exp(float64(x))
			var ulp float64
			switch w := float32(want); {
			case math.IsInf(float64(w), 1):
				ulp = math.Ldexp(1, 104)
			case w < 0x1p-126:
				ulp = 0x1p-149
			default:
				_, e := math.Frexp(float64(w))
				ulp = math.Ldexp(1, e-24)
			}
			if x > 88.72283 {
				if !math.IsInf(float64(got[i]), 1) {
					t.Fatalf("%s expf(%g) = %g, want +Inf", name, x, got[i])
				}
				continue
			}
			if d := math.Abs(float64(got[i]) - want); d > 2*ulp {
				t.Fatalf("%s expf(%g) = %g, math.Exp %g: %.2f ulp", name, x, got[i], want, d/ulp)
			}
		}
	}
}

func TestSoftmaxCausalRowBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	ref, _ := NewVariant("purego")
	for _, name := range Available() {
		c, _ := NewVariant(name)
		for _, n := range []int{1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 511, 512, 1000} {
			for trial := 0; trial < 6; trial++ {
				row := make([]float32, n)
				amp := []float64{0.01, 1, 5, 30, 300, 1e4}[trial]
				for i := range row {
					row[i] = float32(amp * r.NormFloat64())
				}
				if trial == 5 && n > 4 { // odd entries
					row[1] = float32(math.Inf(-1))
					row[n/2] = float32(math.Copysign(0, -1))
					row[n-1] = float32(math.NaN())
				}
				for _, last := range []int{0, n / 3, n / 2, n - 2, n - 1} {
					if last < 0 {
						continue
					}
					scale := float32(0.05 + r.Float64())
					want := append([]float32(nil), row...)
					got := append([]float32(nil), row...)
					ref.SoftmaxCausalRow(want, last, scale)
					c.SoftmaxCausalRow(got, last, scale)
					for i := range got {
						if !sameBits(got[i], want[i]) {
							t.Fatalf("%s softmax n=%d last=%d amp=%g: [%d] %g, purego %g", name, n, last, amp, i, got[i], want[i])
						}
					}
					if trial < 5 {
						checkSoftmax(t, name, row, got, last, scale)
					}
				}
			}
		}
	}
	// Degenerate rows: all -Inf (NaN result), +Inf, NaN.
	for _, name := range Available() {
		c, _ := NewVariant(name)
		for _, v := range []float32{float32(math.Inf(-1)), float32(math.Inf(1)), float32(math.NaN()), 0} {
			for _, n := range []int{1, 16, 40} {
				row := make([]float32, n)
				for i := range row {
					row[i] = v
				}
				want := append([]float32(nil), row...)
				ref.SoftmaxCausalRow(want, n-1, 1)
				c.SoftmaxCausalRow(row, n-1, 1)
				for i := range row {
					if !sameBits(row[i], want[i]) {
						t.Fatalf("%s softmax of %g n=%d: [%d] %g, purego %g", name, v, n, i, row[i], want[i])
					}
				}
			}
		}
	}
}

// checkSoftmax compares a softmax row with a float64 reference.
func checkSoftmax(t *testing.T, name string, in, got []float32, last int, scale float32) {
	t.Helper()
	mx := math.Inf(-1)
	for _, v := range in[:last+1] {
		mx = max(mx, float64(v*scale))
	}
	var sum float64
	for _, v := range in[:last+1] {
		sum += math.Exp(float64(v*scale) - mx)
	}
	for i, g := range got {
		want := 0.0
		if i <= last {
			want = math.Exp(float64(in[i]*scale)-mx) / sum
		}
		// expf is within 2 ulp; x−max rounded in float32 adds |x−max|·2⁻²⁴.
		d := math.Abs(float64(in[i]*scale) - mx)
		if math.Abs(float64(g)-want) > (1e-6+d*0x1p-23)*want+1e-37 {
			t.Fatalf("%s softmax last=%d [%d] = %g, float64 %g", name, last, i, g, want)
		}
	}
}

func TestSiLUMulBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	ref, _ := NewVariant("purego")
	special := []float32{0, float32(math.Copysign(0, -1)), 88.8, -88.8, 103.99, -103.99, 200, -200,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-40, -1e-40}
	for _, name := range Available() {
		c, _ := NewVariant(name)
		for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 33, 100, 1000, 1 << 16} {
			gate, up := make([]float32, n), make([]float32, n)
			for i := range gate {
				gate[i] = float32(4 * r.NormFloat64())
				up[i] = float32(r.NormFloat64())
			}
			for i := 0; i < n && i < len(special); i++ {
				gate[(i*7919)%n] = special[i]
			}
			want := make([]float32, n)
			ref.SiLUMul(want, gate, up)
			got := make([]float32, n+3) // longer out: only len(gate) written
			c.SiLUMul(got, gate, up)
			for i := range want {
				if !sameBits(got[i], want[i]) {
					t.Fatalf("%s silu n=%d [%d] g=%g u=%g: %g, purego %g", name, n, i, gate[i], up[i], got[i], want[i])
				}
				// exp(−g) overflows float32 below g ≈ −88.7 (silu = −0 there).
				if g := float64(gate[i]); !math.IsNaN(g) && math.Abs(g) < 80 {
					w := g / (1 + math.Exp(-g)) * float64(up[i])
					if math.Abs(float64(want[i])-w) > 1e-6*math.Abs(w)+1e-37 {
						t.Fatalf("silu(%g)·%g = %g, float64 %g", g, up[i], want[i], w)
					}
				}
			}
			if got[n] != 0 || got[n+1] != 0 || got[n+2] != 0 {
				t.Fatalf("%s silu n=%d wrote past len(gate)", name, n)
			}
			// In place (out aliases gate).
			g2 := append([]float32(nil), gate...)
			c.SiLUMul(g2, g2, up)
			for i := range want {
				if !sameBits(g2[i], want[i]) {
					t.Fatalf("%s silu in place n=%d [%d]: %g want %g", name, n, i, g2[i], want[i])
				}
			}
		}
	}
}

func BenchmarkSoftmaxCausalRow(b *testing.B) {
	row := make([]float32, 512)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range row {
		row[i] = float32(r.NormFloat64())
	}
	buf := make([]float32, 512)
	for _, name := range Available() {
		c, _ := NewVariant(name)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				copy(buf, row)
				c.SoftmaxCausalRow(buf, 511, 0.125)
			}
		})
	}
}

func BenchmarkSiLUMul(b *testing.B) {
	const n = 4096
	g, u, o := make([]float32, n), make([]float32, n), make([]float32, n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range g {
		g[i], u[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	for _, name := range Available() {
		c, _ := NewVariant(name)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				c.SiLUMul(o, g, u)
			}
		})
	}
}

// TestSoftmaxCausalRowsBitwise: the multi-row softmax gives every row
// bitwise what the purego SoftmaxCausalRow gives it, for every variant,
// block counts that are not multiples of 8, rows longer than their last
// entry, and specials (NaN, ±Inf, −0, huge values) anywhere.
func TestSoftmaxCausalRowsBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	ref, _ := NewVariant("purego")
	for _, name := range Available() {
		c, _ := NewVariant(name)
		for _, ld := range []int{1, 5, 9, 16, 17, 40, 128, 131, 256} {
			for trial := 0; trial < 5; trial++ {
				last0 := r.IntN(ld)
				n := 1 + r.IntN(ld-last0)
				s := make([]float32, n*ld+3)
				amp := []float64{0.01, 1, 30, 1e4, 1}[trial]
				for i := range s {
					s[i] = float32(amp * r.NormFloat64())
				}
				if trial == 4 {
					for k := 0; k < 4; k++ {
						s[r.IntN(n*ld)] = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Copysign(0, -1))}[k]
					}
				}
				scale := float32(0.05 + r.Float64())
				want := append([]float32(nil), s...)
				for i := 0; i < n; i++ {
					ref.SoftmaxCausalRow(want[i*ld:(i+1)*ld], last0+i, scale)
				}
				got := append([]float32(nil), s...)
				c.SoftmaxCausalRows(got, ld, n, last0, scale)
				for i := range got {
					if !sameBits(got[i], want[i]) {
						t.Fatalf("%s ld=%d n=%d last0=%d trial %d: [%d] %g, row by row %g", name, ld, n, last0, trial, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkSoftmaxCausalRows: one head of causal scores (T = 128, the
// fine-tuning window; 256, the search's) row by row and eight rows at a
// time.
func BenchmarkSoftmaxCausalRows(b *testing.B) {
	for _, T := range []int{128, 256} {
		s := make([]float32, T*T)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		buf := make([]float32, T*T)
		c := New()
		b.Run(fmt.Sprintf("T=%d/rowByRow", T), func(b *testing.B) {
			for b.Loop() {
				copy(buf, s)
				for i := 0; i < T; i++ {
					c.SoftmaxCausalRow(buf[i*T:(i+1)*T], i, 0.25)
				}
			}
		})
		b.Run(fmt.Sprintf("T=%d/rows", T), func(b *testing.B) {
			for b.Loop() {
				copy(buf, s)
				c.SoftmaxCausalRows(buf, T, T, 0, 0.25)
			}
		})
	}
}

// TestAttnDSRowKernels: the attention-backward row kernels against plain
// loops, bit for bit (NaNs of different payloads in both operands, ±Inf,
// −0), at every length up to 70 and every variant.
func TestAttnDSRowKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	specials := []float32{float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc12345),
		math.Float32frombits(0xffa00001), float32(math.Copysign(0, -1)), 0, 1e-40}
	for _, name := range Available() {
		c, _ := NewVariant(name)
		for n := 0; n <= 70; n++ {
			for trial := 0; trial < 4; trial++ {
				p, d := randVec(r, n), randVec(r, n)
				if trial >= 2 && n > 0 {
					for k := 0; k < 3; k++ {
						p[r.IntN(n)] = specials[r.IntN(len(specials))]
						d[r.IntN(n)] = specials[r.IntN(len(specials))]
					}
				}
				fs, scale := float32(r.NormFloat64()), float32(0.125)
				want := append([]float32(nil), d...)
				for j := range want {
					want[j] = p[j] * (want[j] - fs) * scale
				}
				got := append([]float32(nil), d...)
				c.AttnDSScale(p, got, fs, scale)
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("%s AttnDSScale n=%d [%d]: %#x, loop %#x", name, n, j, math.Float32bits(got[j]), math.Float32bits(want[j]))
					}
				}
				// Masked columns: zeros in p (either sign), finite d, then
				// one offender at a random place.
				for j := range p {
					p[j] = 0
					if j%3 == 0 {
						p[j] = float32(math.Copysign(0, -1))
					}
				}
				if !c.AttnMaskedClean(p, d[:n]) && trial < 2 {
					t.Fatalf("%s AttnMaskedClean n=%d: zeros and finite values reported unclean", name, n)
				}
				if n > 0 {
					j := r.IntN(n)
					bad := []struct{ p, d float32 }{{1e-30, 0}, {float32(math.NaN()), 0}, {0, float32(math.Inf(-1))}, {0, float32(math.NaN())}}[trial]
					p[j], d[j] = bad.p, bad.d
					if c.AttnMaskedClean(p, d) {
						t.Fatalf("%s AttnMaskedClean n=%d: p=%g d=%g at %d not seen", name, n, bad.p, bad.d, j)
					}
				}
			}
		}
	}
}
