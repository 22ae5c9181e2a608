package train

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
	"math"
	"math/rand/v2"
	"testing"
)

// noRows hides the backend's row kernels (the Go fallback path).
type noRows struct{ backend.Backend }

// The fast float32 cross-entropy against the float64 one (CrossEntropy
// instantiated with float64, exact exp and log-sum-exp): confident rows
// (p_t > 1/2), ordinary rows and rows whose target probability underflows
// float32, with and without the backend's row kernels.
func TestCrossEntropyIntoMatchesFloat64(t *testing.T) {
	const V = 300
	seqs := [][]int{{1, 5, 7, 2, 9, 4}, {3, 3, 8}}
	rows := 9
	r := rand.New(rand.NewPCG(5, 5))
	z := make([]float32, rows*V)
	for i := range z {
		z[i] = float32(3 * r.NormFloat64())
	}
	z[0*V+5] = 17   // row 0 predicts 5 with p ≈ 0.999
	z[1*V+7] = -150 // row 1: p_t underflows float32
	z[2*V+2] = 11   // row 2: p_t a little above 1/2
	z64 := make([]float64, len(z))
	for i, v := range z {
		z64[i] = float64(v)
	}
	d64 := make([]float64, len(z))
	const w = 0.8
	want := CrossEntropy(d64, z64, seqs, V, w)
	pt := func(r, t int) float64 { return math.Exp(z64[r*V+t] - nn.LogSumExp(z64[r*V:(r+1)*V])) }
	if p0, p1, p2 := pt(0, 5), pt(1, 7), pt(2, 2); !(p0 > 0.99 && p0 < 0.9999 && p1 < 1e-45 && p2 > 0.5 && p2 < 0.9) {
		t.Fatalf("test rows not in their regimes: %g %g %g", p0, p1, p2)
	}
	for _, be := range []backend.Backend{cpu(t), noRows{cpu(t)}} {
		for _, workers := range []int{1, 4} {
			dl := make([]float32, len(z))
			for i := range dl {
				dl[i] = 123 // overwritten, not accumulated
			}
			got := crossEntropyInto(be, workers, dl, z, seqs, V, w)
			if math.Abs(got-want) > 1e-6*want {
				t.Errorf("loss %.12g, float64 %.12g", got, want)
			}
			for i := range dl {
				// float32 softmax: a few ulp of p, times the scale
				if e := math.Abs(float64(dl[i]) - d64[i]); e > 4e-7*math.Abs(d64[i])+1e-9 {
					t.Fatalf("dlogits[%d] (row %d) = %.9g, float64 %.9g", i, i/V, dl[i], d64[i])
				}
			}
		}
	}
}
