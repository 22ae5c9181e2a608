package experiment

import (
	"math"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// KLRow against the closed form of two-outcome distributions and a naive
// float64 sum with explicit softmaxes.
func TestKLRow(t *testing.T) {
	// softmax([a, 0]) = (σ(a), 1-σ(a)).
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for _, c := range [][2]float64{{0, 0}, {2, -1}, {-3, 4}, {10, 0.5}} {
		p, q := sig(c[0]), sig(c[1])
		want := p*math.Log(p/q) + (1-p)*math.Log((1-p)/(1-q))
		got := KLRow([]float32{float32(c[0]), 0}, []float32{float32(c[1]), 0})
		if math.Abs(got-want) > 1e-6*math.Max(1, want) {
			t.Errorf("KL(%v) = %v, want %v", c, got, want)
		}
	}
	// Shift invariance and a naive reference on a wider row.
	p := []float32{1, -2, 0.5, 3, -1}
	q := []float32{0, 1, -0.5, 2, 2}
	ps, qs := softmax64(p), softmax64(q)
	var want float64
	for i := range ps {
		want += ps[i] * math.Log(ps[i]/qs[i])
	}
	shifted := make([]float32, len(q))
	for i := range q {
		shifted[i] = q[i] + 7
	}
	for _, got := range []float64{KLRow(p, q), KLRow(p, shifted)} {
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("KL = %v, want %v", got, want)
		}
	}
}

func softmax64(x []float32) []float64 {
	out := make([]float64, len(x))
	var s float64
	for i, v := range x {
		out[i] = math.Exp(float64(v))
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// KLToDense: 0 for the model itself; for another model, the mean of a naive
// per-position KL over every position but the last of each window.
func TestKLToDense(t *testing.T) {
	be, err := backend.Get("cpu")
	if err != nil {
		t.Fatal(err)
	}
	rc := modeltest.Cfg{Heads: 4, KV: 2, HD: 4, Hidden: 16, Inter: 24, Vocab: 11, Layers: 2}
	a := modeltest.Random(rc, false, 1)
	b := modeltest.Random(rc, true, 2)
	ids := make([]int, 23)
	for i := range ids {
		ids[i] = (i * 7) % rc.Vocab
	}
	const seqLen = 5
	kl, n, err := KLToDense(be, a, a, ids, seqLen)
	if err != nil || kl != 0 || n != 4*(seqLen-1) {
		t.Fatalf("self KL = %v over %d (%v)", kl, n, err)
	}
	kl, _, err = KLToDense(be, a, b, ids, seqLen)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	cnt := 0
	for w := 0; w < 4; w++ {
		seq := ids[w*seqLen : (w+1)*seqLen]
		pl := a.Forward(be, [][]int{seq})
		ql := b.Forward(be, [][]int{seq})
		for pos := 0; pos < seqLen-1; pos++ {
			ps := softmax64(pl[pos*rc.Vocab : (pos+1)*rc.Vocab])
			qs := softmax64(ql[pos*rc.Vocab : (pos+1)*rc.Vocab])
			for i := range ps {
				want += ps[i] * math.Log(ps[i]/qs[i])
			}
			cnt++
		}
	}
	want /= float64(cnt)
	if want <= 0 || math.Abs(kl-want) > 1e-6*want {
		t.Fatalf("KL = %v, want %v", kl, want)
	}
	if _, _, err := KLToDense(be, a, b, ids[:3], seqLen); err == nil {
		t.Fatal("fewer tokens than a window accepted")
	}
}
