package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/model"
)

var gradCases = []randCfg{
	{Heads: 4, KV: 4, HD: 8, Hidden: 16, Inter: 12, Vocab: 23, Layers: 2},                                          // MHA, half rope, untied
	{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 23, Layers: 2, Interleaved: true, Tied: true},           // GQA, interleaved rope, tied
	{Heads: 6, KV: 2, HD: 4, Hidden: 12, Inter: 10, Vocab: 19, Layers: 3, Bias: true, MLPBias: true},               // GQA + all biases, MLP-less layer
	{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 10, Vocab: 17, Layers: 2, Llama3: true, Tied: true},                // llama3 rope scaling
	{Heads: 2, KV: 1, HD: 4, Hidden: 8, Inter: 9, Vocab: 13, Layers: 3, Interleaved: true, Bias: true, Tied: true}, // pruned layer without attention
	// Pruned GQA, ragged groups: 8 query heads over 4 KV heads keeping {0,1,2,5,7}.
	{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 10, Vocab: 17, Layers: 2, Bias: true, MLPBias: true, KeepHeads: []int{0, 1, 2, 5, 7}},
	// Keeping {2,3,6}: KV heads 0 and 2 are dropped, groups of 2 and 1.
	{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 10, Vocab: 17, Layers: 2, Interleaved: true, KeepHeads: []int{2, 3, 6}},
}

var gradSeqs = [][]int{{1, 5, 7, 3, 9, 2, 11, 4, 8}, {3, 2, 3}, {0, 12, 7, 1, 3}}

func TestTrainForwardMatchesModelForward(t *testing.T) {
	be := cpu(t)
	for ci, rc := range gradCases {
		for _, pruned := range []bool{false, true} {
			m := randomModel(rc, pruned, uint64(ci+1))
			if err := m.Validate("random"); err != nil {
				t.Fatal(err)
			}
			want := m.Forward(be, gradSeqs)
			for _, save := range []bool{false, true} {
				g := NewGraph(be, FromModel(m))
				g.SaveProbs = save
				got := g.Forward(gradSeqs)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("case %d pruned=%v: logit %d: train %v, model.Forward %v", ci, pruned, i, got[i], want[i])
					}
				}
			}
		}
	}
}

type lossKind int

const (
	lossCE lossKind = iota
	lossKL
	lossSparseKL
	lossMix
)

// modelLoss runs forward (+ backward when grads != nil) in float64.
func modelLoss(w *Weights[float64], kind lossKind, teacher []float32, grads *Weights[float64], saveProbs bool) float64 {
	g := NewGraph(nil, w)
	g.SaveProbs = saveProbs
	logits := g.Forward(gradSeqs)
	V := w.Cfg.Vocab
	var dl []float64
	if grads != nil {
		dl = make([]float64, len(logits))
	}
	var loss float64
	switch kind {
	case lossCE:
		loss = CrossEntropy(dl, logits, gradSeqs, V, 1)
	case lossKL:
		loss = KL(dl, logits, teacher, gradSeqs, V, 1)
	case lossSparseKL:
		loss = SparseKL(dl, logits, teacher, gradSeqs, V, 5, 1)
	case lossMix:
		loss = 0.3*CrossEntropy(dl, logits, gradSeqs, V, 0.3) + 0.7*SparseKL(dl, logits, teacher, gradSeqs, V, 4, 0.7)
	}
	if grads != nil {
		g.Backward(dl, grads)
	}
	return loss
}

// checkGrads compares analytic float64 gradients with central differences of
// the float64 loss, on a random sample of entries of every tensor. The
// relative error is |g − fd| / max(|fd|, |g|, floor) with floor = 1e-3 of the
// tensor's largest gradient (so entries that are zero up to rounding do not
// divide by ~0); the bound is 1e-5.
func checkGrads(t *testing.T, w *Weights[float64], kind lossKind, teacher []float32, saveProbs bool, perTensor int, rng *rand.Rand) float64 {
	grads := ZeroLike(w)
	modelLoss(w, kind, teacher, grads, saveProbs)
	gt := grads.Tensors()
	worst := 0.0
	for ti, p := range w.Tensors() {
		g := gt[ti].Data
		gmax := 0.0
		for _, v := range g {
			gmax = math.Max(gmax, math.Abs(v))
		}
		for s := 0; s < perTensor; s++ {
			i := rng.IntN(len(p.Data))
			old := p.Data[i]
			h := 1e-5 * math.Max(1, math.Abs(old))
			p.Data[i] = old + h
			lp := modelLoss(w, kind, teacher, nil, false)
			p.Data[i] = old - h
			lm := modelLoss(w, kind, teacher, nil, false)
			p.Data[i] = old
			fd := (lp - lm) / (2 * h)
			den := math.Max(math.Max(math.Abs(fd), math.Abs(g[i])), 1e-3*gmax+1e-12)
			rel := math.Abs(g[i]-fd) / den
			worst = math.Max(worst, rel)
			if rel > 1e-5 {
				t.Errorf("%s[%d]: analytic %.10g, finite difference %.10g (rel %.2g)", p.Name, i, g[i], fd, rel)
			}
		}
	}
	return worst
}

func TestModelGradientsFiniteDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	per := 6
	if testing.Short() {
		per = 2
	}
	for ci, rc := range gradCases {
		for _, pruned := range []bool{false, true} {
			kinds := []lossKind{lossCE, lossKL, lossSparseKL, lossMix}
			for _, kind := range kinds {
				name := fmt.Sprintf("case%d/pruned=%v/loss%d", ci, pruned, kind)
				t.Run(name, func(t *testing.T) {
					m := randomModel(rc, pruned, uint64(ci+1))
					var teacher []float32
					if kind != lossCE {
						tm := randomModel(rc, false, uint64(ci+100))
						teacher = tm.Forward(cpu(t), gradSeqs)
					}
					w := Convert[float64](FromModel(m))
					w.Rope = m.Rope
					worst := checkGrads(t, w, kind, teacher, kind == lossKL, per, rng)
					t.Logf("worst relative error %.2g", worst)
				})
			}
		}
	}
}

// The float32 training path (backend GEMMs, float32 ops) must agree with the
// float64 twin to float32 accuracy: per tensor ‖g32 − g64‖ / ‖g64‖ < 1e-4.
func TestFloat32GradientsMatchFloat64(t *testing.T) {
	be := cpu(t)
	for ci, rc := range gradCases {
		m := randomModel(rc, true, uint64(ci+1))
		w32 := FromModel(m)
		w64 := Convert[float64](w32)
		g32, g64 := ZeroLike(w32), ZeroLike(w64)
		gr := NewGraph(be, w32)
		logits := gr.Forward(gradSeqs)
		dl := make([]float32, len(logits))
		CrossEntropy(dl, logits, gradSeqs, m.Cfg.Vocab, 1)
		gr.Backward(dl, g32)
		modelLoss(w64, lossCE, nil, g64, false)
		t64 := g64.Tensors()
		for ti, tt := range g32.Tensors() {
			var num, den float64
			for i, v := range tt.Data {
				d := float64(v) - t64[ti].Data[i]
				num += d * d
				den += t64[ti].Data[i] * t64[ti].Data[i]
			}
			if rel := math.Sqrt(num / math.Max(den, 1e-30)); rel > 1e-4 {
				t.Errorf("case %d %s: float32 vs float64 gradient relative error %.2g", ci, tt.Name, rel)
			}
		}
	}
}

var _ = model.RopeHalf
