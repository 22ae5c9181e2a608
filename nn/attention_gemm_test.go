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

// The GEMM backward must agree with the direct loop backward (checked against
// float64 finite differences in ops_backward_test.go), and recomputing the
// probabilities must give bitwise the gradients of saved ones.
func TestAttentionBackwardGEMMMatchesLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range backend.Names() {
		be, _ := backend.Get(name)
		for _, c := range []struct{ T, nH, nKV, d int }{{1, 1, 1, 4}, {9, 4, 4, 8}, {17, 8, 2, 16}, {6, 6, 3, 4}, {31, 2, 1, 64}} {
			t.Run(fmt.Sprintf("%s/%+v", name, c), func(t *testing.T) {
				rnd := func(n int) []float32 {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(r.NormFloat64())
					}
					return x
				}
				qn, kn := c.T*c.nH*c.d, c.T*c.nKV*c.d
				q, k, v, dout := rnd(qn), rnd(kn), rnd(kn), rnd(qn)
				grads := func(be backend.Backend, save bool) (dq, dk, dv []float32) {
					var probs []float32
					if save {
						probs = make([]float32, c.nH*c.T*c.T)
						AttentionForwardT(be, make([]float32, qn), probs, q, k, v, c.T, 0, c.nH, c.nKV, c.d)
					}
					dq, dk, dv = make([]float32, qn), make([]float32, kn), make([]float32, kn)
					AttentionBackward(be, dq, dk, dv, dout, q, k, v, probs, c.T, c.nH, c.nKV, c.d)
					return
				}
				wq, wk, wv := grads(nil, false)
				gq, gk, gv := grads(be, false)
				sq, sk, sv := grads(be, true)
				for _, p := range []struct {
					n            string
					want, got, s []float32
				}{{"dq", wq, gq, sq}, {"dk", wk, gk, sk}, {"dv", wv, gv, sv}} {
					for i := range p.want {
						if math.Abs(float64(p.got[i]-p.want[i])) > 1e-4*(1+math.Abs(float64(p.want[i]))) {
							t.Fatalf("%s[%d]: gemm %g loop %g", p.n, i, p.got[i], p.want[i])
						}
						if math.Float32bits(p.got[i]) != math.Float32bits(p.s[i]) {
							t.Fatalf("%s[%d]: recomputed %g saved %g differ", p.n, i, p.got[i], p.s[i])
						}
					}
				}
			})
		}
	}
}
