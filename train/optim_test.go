package train

import (
	"math"
	"testing"
)

// AdamW and SGD against the update formulas written out in float64.
func TestOptimizerFormulas(t *testing.T) {
	w0 := []float32{0.5, -1.25, 2}
	gs := [][]float32{{0.1, -0.2, 0.3}, {-0.05, 0.4, 0.0}, {0.2, 0.2, -0.7}}
	lr, b1, b2, eps, wd := 1e-2, 0.9, 0.95, 1e-8, 0.1
	w := append([]float32(nil), w0...)
	o := NewAdamW(b1, b2, eps, wd)
	ref := []float64{0.5, -1.25, 2}
	m, v := make([]float64, 3), make([]float64, 3)
	for s, g := range gs {
		o.Step([]Tensor[float32]{{"w", w}}, []Tensor[float32]{{"w", g}}, lr)
		for i := range ref {
			gi := float64(g[i])
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			mh := m[i] / (1 - math.Pow(b1, float64(s+1)))
			vh := v[i] / (1 - math.Pow(b2, float64(s+1)))
			ref[i] = ref[i]*(1-lr*wd) - lr*mh/(math.Sqrt(vh)+eps)
		}
	}
	for i := range ref {
		if math.Abs(float64(w[i])-ref[i]) > 1e-6*math.Abs(ref[i]) {
			t.Errorf("adamw w[%d] = %v, want %v", i, w[i], ref[i])
		}
	}
	w = append([]float32(nil), w0...)
	(&SGD{WeightDecay: wd}).Step([]Tensor[float32]{{"w", w}}, []Tensor[float32]{{"w", gs[0]}}, lr)
	for i := range w {
		want := float64(w0[i]) - lr*(float64(gs[0][i])+wd*float64(w0[i]))
		if math.Abs(float64(w[i])-want) > 1e-7 {
			t.Errorf("sgd w[%d] = %v, want %v", i, w[i], want)
		}
	}
}

func TestClipAndSchedule(t *testing.T) {
	g := []Tensor[float32]{{"a", []float32{3, 0}}, {"b", []float32{4}}}
	if n := ClipGrads(g, 1); math.Abs(n-5) > 1e-12 {
		t.Fatalf("norm %v, want 5", n)
	}
	if n := GradNorm(g); math.Abs(n-1) > 1e-6 {
		t.Fatalf("clipped norm %v, want 1", n)
	}
	s := Schedule{Kind: "cosine", LR: 1, Warmup: 2, MinLR: 0.1, Total: 12}
	want := map[int]float64{0: 0.5, 1: 1, 2: 1, 7: 0.1 + 0.45*(1+math.Cos(math.Pi*0.5)), 12: 0.1}
	for st, w := range want {
		if got := s.At(st); math.Abs(got-w) > 1e-12 {
			t.Errorf("cosine step %d: %v, want %v", st, got, w)
		}
	}
	s.Kind = "linear"
	if got := s.At(7); math.Abs(got-0.55) > 1e-12 {
		t.Errorf("linear step 7: %v, want 0.55", got)
	}
	s.Kind = "constant"
	if got := s.At(9); got != 1 {
		t.Errorf("constant: %v", got)
	}
	if (Schedule{Kind: "step"}).Validate() == nil {
		t.Error("unknown schedule accepted")
	}
}

// The loader's order depends only on the seed, and restoring (Epoch, Pos)
// continues the same stream.
func TestLoaderDeterministicAndResumable(t *testing.T) {
	toks := make([]int, 103)
	for i := range toks {
		toks[i] = i
	}
	a, _ := NewLoader(toks, 10, 3, 5)
	b, _ := NewLoader(toks, 10, 3, 5)
	var seen [][]int
	for i := 0; i < 7; i++ {
		x, y := a.Next(), b.Next()
		for j := range x {
			if x[j][0] != y[j][0] {
				t.Fatal("same seed, different order")
			}
		}
		seen = append(seen, x...)
	}
	// Each epoch visits every one of the 10 sequences once.
	cnt := map[int]int{}
	for _, s := range seen[:10] {
		cnt[s[0]]++
	}
	if len(cnt) != 10 {
		t.Fatalf("epoch 0 visits %d distinct sequences, want 10", len(cnt))
	}
	c, _ := NewLoader(toks, 10, 3, 5)
	c.Epoch, c.Pos = a.Epoch, a.Pos
	for i := 0; i < 5; i++ {
		x, y := a.Next(), c.Next()
		for j := range x {
			if x[j][0] != y[j][0] {
				t.Fatal("restored loader diverges")
			}
		}
	}
	if _, err := NewLoader(toks[:5], 10, 1, 0); err == nil {
		t.Error("short corpus accepted")
	}
	if _, err := NewLoader(nil, 10, 1, 0); err == nil {
		t.Error("empty corpus accepted")
	}
}
