package nn

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// The fused AdamW kernel (assembly where available) is bitwise the
// portable float32 loop, for every length (vector body and tail), and flags
// non-finite gradients.
func TestAdamWKernelMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := backend.AdamWStep{Decay: 1 - 1e-3*0.01, B1: 0.9, C1: 0.1, B2: 0.999, C2: 1 - 0.999, BC2s: float32(math.Sqrt(1 - 0.999*0.999)), Eps: 1e-8, NegLR1: float32(-1e-3 / (1 - 0.81))}
	for _, n := range []int{0, 1, 7, 8, 9, 31, 64, 1000} {
		mk := func(s float64) []float32 {
			o := make([]float32, n)
			for i := range o {
				o[i] = float32(r.NormFloat64() * s)
			}
			return o
		}
		w, g, m, v := mk(1), mk(1e-2), mk(1e-3), mk(1e-5)
		for i := range v {
			v[i] = float32(math.Abs(float64(v[i])))
		}
		if n > 3 {
			g[2] = 0
			g[3] = 1e-30
		}
		w2, m2, v2 := slices.Clone(w), slices.Clone(m), slices.Clone(v)
		ok1 := adamwFused(w, g, m, v, &c)
		ok2 := adamwGo(w2, g, m2, v2, &c)
		if !ok1 || !ok2 {
			t.Fatalf("n=%d: finite gradients flagged", n)
		}
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(w2[i]) || m[i] != m2[i] || v[i] != v2[i] {
				t.Fatalf("n=%d [%d]: kernel (%v %v %v), Go (%v %v %v)", n, i, w[i], m[i], v[i], w2[i], m2[i], v2[i])
			}
		}
		for _, bad := range []float32{float32(math.Inf(1)), float32(math.NaN())} {
			if n == 0 {
				continue
			}
			g[n-1] = bad
			if adamwFused(w, g, m, v, &c) {
				t.Errorf("n=%d: gradient %v not flagged", n, bad)
			}
			g[n-1] = 0
		}
	}
}
