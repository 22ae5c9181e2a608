package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
)

// The GEMM formulation must agree with the direct causal loop (an independent
// formulation of the same attention) on every backend, including with a KV
// cache (past > 0) and grouped heads.
func TestAttentionGEMMMatchesLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range backend.Names() {
		be, err := backend.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ T, past, nH, nKV, d int }{
			{1, 0, 1, 1, 4}, {7, 0, 4, 4, 8}, {13, 0, 8, 2, 16}, {5, 9, 6, 3, 4}, {33, 0, 2, 1, 64}, {1, 20, 4, 2, 8},
		} {
			t.Run(fmt.Sprintf("%s/%+v", name, c), func(t *testing.T) {
				Tk := c.past + c.T
				rnd := func(n int) []float32 {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(r.NormFloat64())
					}
					return x
				}
				q, k, v := rnd(c.T*c.nH*c.d), rnd(Tk*c.nKV*c.d), rnd(Tk*c.nKV*c.d)
				want := make([]float32, c.T*c.nH*c.d)
				got := make([]float32, len(want))
				pw := make([]float32, c.nH*c.T*Tk)
				pg := make([]float32, len(pw))
				AttentionForward(want, pw, q, k, v, c.T, c.past, c.nH, c.nKV, c.d)
				AttentionForwardGEMM(be, got, pg, q, k, v, c.T, c.past, c.nH, c.nKV, c.d)
				for i := range want {
					if math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("out[%d]: gemm %g loop %g", i, got[i], want[i])
					}
				}
				for i := range pw {
					if math.Abs(float64(pg[i]-pw[i])) > 1e-6 {
						t.Fatalf("probs[%d]: gemm %g loop %g", i, pg[i], pw[i])
					}
				}
			})
		}
	}
}
