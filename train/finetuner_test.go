package train

import (
	cpubackend "github.com/darwinlm/darwinlm-go/backend/cpu"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/model"
)

func TestOptionsZeroValueRejected(t *testing.T) {
	if err := (Options{}).Validate(); err == nil || !strings.Contains(err.Error(), "optimizer is not set") {
		t.Fatalf("zero Options: %v", err)
	}
	// A half-filled AdamW must not silently run with β2 = 0 or eps = 0.
	if err := (Options{Optimizer: "adamw", LR: 1e-5}).Validate(); err == nil || !strings.Contains(err.Error(), "beta2") {
		t.Fatalf("adamw without betas: %v", err)
	}
	o := SelectionPreset()
	o.Eps = 0
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "eps") {
		t.Fatalf("eps 0: %v", err)
	}
	for _, o := range []Options{SelectionPreset(), DefaultOptions(), {Optimizer: "sgd", LR: 0.1}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	// The preset is the reference's selection fine-tuning (paper-notes:
	// torch.optim.AdamW(lr=1e-5) with torch defaults, weight_decay 0.01).
	want := Options{Optimizer: "adamw", LR: 1e-5, Schedule: "constant", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	if SelectionPreset() != want {
		t.Errorf("SelectionPreset() = %+v", SelectionPreset())
	}
	// Bad options and bad input fail before touching the model.
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 4, Hidden: 8, Inter: 6, Vocab: 11, Layers: 2}, false, 1)
	before := slices.Clone(m.Layers[0].Wq)
	if _, err := NewFineTuner(cpu(t), Options{}).Train(m, [][]int{{1, 2, 3}}); err == nil {
		t.Fatal("zero options trained")
	}
	ft := NewFineTuner(cpu(t), SelectionPreset())
	for _, seqs := range [][][]int{{{1, 2, 3}, {4}}, {{1, 2, 11}}, {{1, -1}}} {
		if _, err := ft.Train(m, seqs); err == nil {
			t.Errorf("%v: no error", seqs)
		}
	}
	if !slices.Equal(before, m.Layers[0].Wq) {
		t.Error("a rejected call changed the weights")
	}
}

func testSeqs(n, T, vocab int, seed uint64) [][]int {
	r := rand.New(rand.NewPCG(seed, 3))
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, T)
		for j := range out[i] {
			out[i][j] = r.IntN(vocab)
		}
	}
	return out
}

// Each FineTuner step: its loss and gradients are those of the independent
// float64 forward/backward (refGrad) at the current weights, and the AdamW
// updates over those gradients match an independent float64 AdamW (torch's
// formula, written out here) to float32 rounding.
func TestFineTunerMatchesFloat64AdamW(t *testing.T) {
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 29, Layers: 3}
	for _, pruned := range []bool{false, true} {
		m := randomModel(rc, pruned, 5)
		o := SelectionPreset()
		o.LR = 1e-3 // visible updates
		ft := NewFineTuner(cpu(t), o)
		seqs := testSeqs(4, 12, rc.Vocab, 9)
		w0 := map[string][]float64{}
		for _, p := range FromModel(m).Tensors() {
			w0[p.Name] = f64s(p.Data)
		}
		var gs []map[string][]float64
		worstG, firstRef := 0.0, 0.0
		ft.onStep = func(step int, params, grads []Tensor[float32]) {
			refLoss, refG := refGrad(m, seqs[step-1])
			g := map[string][]float64{}
			for i, p := range params {
				g[p.Name] = f64s(grads[i].Data)
				rg, ok := refG[p.Name]
				if !ok { // unused tensor (norm of a removed MLP): zero gradient
					rg = make([]float64, len(p.Data))
				}
				e := relNorm(g[p.Name], rg)
				worstG = max(worstG, e)
				if e > 1e-4 {
					t.Errorf("pruned=%v step %d %s: gradient relative error %.2g", pruned, step, p.Name, e)
				}
			}
			gs = append(gs, g)
			if step == 1 {
				firstRef = refLoss
			}
		}
		st, err := ft.Train(m, seqs)
		if err != nil {
			t.Fatal(err)
		}
		if st.Steps != 4 || st.Tokens != 48 {
			t.Fatalf("stats %+v", st)
		}
		// Float64 AdamW (torch.optim.AdamW, decoupled decay on every tensor).
		b1, b2, eps, wd, lr := o.Beta1, o.Beta2, o.Eps, o.WeightDecay, o.LR
		for name, w := range w0 {
			mo, vo := make([]float64, len(w)), make([]float64, len(w))
			for s, g := range gs {
				bc1, bc2 := 1-math.Pow(b1, float64(s+1)), 1-math.Pow(b2, float64(s+1))
				for i := range w {
					w[i] *= 1 - lr*wd
					mo[i] = b1*mo[i] + (1-b1)*g[name][i]
					vo[i] = b2*vo[i] + (1-b2)*g[name][i]*g[name][i]
					w[i] -= lr / bc1 * mo[i] / (math.Sqrt(vo[i])/math.Sqrt(bc2) + eps)
				}
			}
		}
		for _, p := range FromModel(m).Tensors() {
			ref := w0[p.Name]
			for i, v := range p.Data {
				// Two float32 roundings of w per step (decay, update), half an
				// ulp each, plus a float32-accurate update.
				steps := float64(len(gs))
				tol := steps*0x1p-23*math.Abs(ref[i]) + 1e-5*lr*steps
				if d := math.Abs(float64(v) - ref[i]); d > tol {
					t.Fatalf("pruned=%v %s[%d]: %.9g, float64 AdamW %.9g (|Δ| %.2g > %.2g)", pruned, p.Name, i, v, ref[i], d, tol)
				}
			}
		}
		// The reported loss is the float64 reference's (HF causal-LM CE).
		if math.Abs(st.FirstLoss-firstRef) > 1e-5*firstRef {
			t.Errorf("first loss %.9g, float64 reference %.9g", st.FirstLoss, firstRef)
		}
		t.Logf("pruned=%v: worst per-tensor gradient error %.2g, losses %.5f → %.5f", pruned, worstG, st.FirstLoss, st.LastLoss)
	}
}

func f64s(s []float32) []float64 {
	o := make([]float64, len(s))
	for i, v := range s {
		o[i] = float64(v)
	}
	return o
}

func relNorm(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num += (a[i] - b[i]) * (a[i] - b[i])
		den += b[i] * b[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func flatWeights(m *model.Model) []float32 {
	var out []float32
	for _, p := range FromModel(m).Tensors() {
		out = append(out, p.Data...)
	}
	return out
}

// One FineTuner reused across models of different widths (wide, pruned,
// ragged GQA with a KV map, wide again) gives bitwise the results of a fresh FineTuner for each, and
// reuses its buffers (no new gradient / moment arenas after the widest).
func TestFineTunerReuseAcrossWidths(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 3, Tied: true}
	seqs := testSeqs(3, 10, rc.Vocab, 4)
	o := SelectionPreset()
	o.LR = 1e-3
	mk := []func() *model.Model{
		func() *model.Model { return randomModel(rc, false, 1) },
		func() *model.Model { return randomModel(rc, true, 2) },
		func() *model.Model { // ragged GQA (a KV map) in layer 1
			r := rc
			r.KeepHeads = []int{0, 1, 3}
			return randomModel(r, true, 3)
		},
		func() *model.Model { return randomModel(rc, false, 4) },
	}
	shared := NewFineTuner(be, o)
	var arena *float32
	for i, f := range mk {
		a, b := f(), f()
		if i == 2 && a.Layers[1].KVMap == nil {
			t.Fatal("the ragged model has no KV map")
		}
		sa, err := shared.Train(a, seqs)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			arena = &shared.gbuf[0]
		} else if &shared.gbuf[0] != arena || len(shared.mbuf) == 0 {
			t.Errorf("model %d: the gradient arena was reallocated", i)
		}
		sb, err := NewFineTuner(be, o).Train(b, seqs)
		if err != nil {
			t.Fatal(err)
		}
		if sa != sb || !slices.Equal(flatWeights(a), flatWeights(b)) {
			t.Errorf("model %d: reused fine-tuner differs from a fresh one (%+v vs %+v)", i, sa, sb)
		}
	}
}

// FineTuner.Train is bitwise the Trainer's one-sequence steps.
func TestFineTunerMatchesTrainer(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2, Bias: true, MLPBias: true}
	seqs := testSeqs(3, 9, rc.Vocab, 8)
	o := SelectionPreset()
	o.LR = 1e-3
	a, b := randomModel(rc, true, 1), randomModel(rc, true, 1)
	if _, err := NewFineTuner(be, o).Train(a, seqs); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(be, b, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		if _, err := tr.TrainStep([][]int{s}); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(flatWeights(a), flatWeights(b)) {
		t.Error("FineTuner and Trainer differ")
	}
}

// Cached-teacher losses against an independent float64 computation (value)
// and central finite differences of it (gradient).
func TestCachedTeacherLosses(t *testing.T) {
	const V, k = 37, 10
	seqs := [][]int{{1, 5, 7, 2, 9}, {3, 3, 8}}
	rows := 8
	r := rand.New(rand.NewPCG(3, 3))
	student := make([]float64, rows*V)
	teacher := make([]float32, rows*V)
	for i := range student {
		student[i] = 2 * r.NormFloat64()
		teacher[i] = float32(2 * r.NormFloat64())
	}
	teacher[3*V+4] = teacher[3*V+5] // a tie inside the top-k
	// Independent reference: positions are rows except each sequence's last.
	pred := []int{0, 1, 2, 3, 5, 6}
	refTopK := func(row int) []int {
		idx := make([]int, V)
		for i := range idx {
			idx[i] = i
		}
		z := teacher[row*V : (row+1)*V]
		sort.SliceStable(idx, func(a, b int) bool { return z[idx[a]] > z[idx[b]] })
		return idx[:k]
	}
	logSoftmax := func(x []float64) []float64 {
		mx := math.Inf(-1)
		for _, v := range x {
			mx = math.Max(mx, v)
		}
		s := 0.0
		for _, v := range x {
			s += math.Exp(v - mx)
		}
		o := make([]float64, len(x))
		for i, v := range x {
			o[i] = v - mx - math.Log(s)
		}
		return o
	}
	ref := func(z []float64, sparse bool) float64 {
		total := 0.0
		for _, row := range pred {
			var S []int
			if sparse {
				S = refTopK(row)
			} else {
				for i := 0; i < V; i++ {
					S = append(S, i)
				}
			}
			a, b := make([]float64, len(S)), make([]float64, len(S))
			for i, v := range S {
				a[i], b[i] = float64(teacher[row*V+v]), z[row*V+v]
			}
			lp, lq := logSoftmax(a), logSoftmax(b)
			for i := range S {
				total += math.Exp(lp[i]) * (lp[i] - lq[i])
			}
		}
		return total / float64(len(pred))
	}
	tk := NewTopKLogits(teacher, rows, V, k)
	for row := 0; row < rows; row++ {
		for i, v := range refTopK(row) {
			if int(tk.Idx[row*k+i]) != v || tk.Val[row*k+i] != teacher[row*V+v] {
				t.Fatalf("row %d: top-k %v, want %v", row, tk.Idx[row*k:(row+1)*k], refTopK(row))
			}
		}
	}
	for _, sparse := range []bool{false, true} {
		const w = 0.7
		dl := make([]float64, len(student))
		var got float64
		if sparse {
			got = SparseKLCached(dl, student, tk, seqs, V, w)
		} else {
			got = KL(dl, student, teacher, seqs, V, w)
		}
		want := ref(student, sparse)
		if math.Abs(got-want) > 1e-12*math.Max(1, want) {
			t.Errorf("sparse=%v: loss %.15g, reference %.15g", sparse, got, want)
		}
		worst := 0.0
		for i := range student {
			const h = 1e-5
			z := slices.Clone(student)
			z[i] += h
			up := ref(z, sparse)
			z[i] -= 2 * h
			fd := w * (up - ref(z, sparse)) / (2 * h)
			e := math.Abs(dl[i] - fd)
			worst = max(worst, e)
			if e > 1e-8 {
				t.Fatalf("sparse=%v: d/dz[%d] = %.10g, finite difference %.10g", sparse, i, dl[i], fd)
			}
		}
		t.Logf("sparse=%v: loss %.6f, worst gradient error %.2g", sparse, got, worst)
	}
	// Distillation through the FineTuner with cached logits equals the
	// Trainer running the teacher every step.
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 23, Layers: 2}
	teach := randomModel(rc, false, 2)
	tseqs := testSeqs(3, 8, rc.Vocab, 1)
	for _, topk := range []int{0, 10} {
		o := DefaultOptions()
		o.LR, o.KDWeight, o.KDTopK = 1e-2, 0.6, topk
		a, b := randomModel(rc, true, 1), randomModel(rc, true, 1)
		ft := NewFineTuner(be, o)
		if _, err := ft.Train(a, tseqs); err == nil {
			t.Error("Train with a kd weight but no teacher logits: no error")
		}
		tl, err := CacheTeacher(be, teach, tseqs, topk)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ft.TrainDistill(a, tseqs, tl); err != nil {
			t.Fatal(err)
		}
		tr, err := NewTrainer(be, b, teach, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range tseqs {
			if _, err := tr.TrainStep([][]int{s}); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(flatWeights(a), flatWeights(b)) {
			t.Errorf("topk %d: cached-teacher distillation differs from running the teacher", topk)
		}
	}
}

// Fine-tuning is bitwise independent of the worker count (one worker per
// candidate when candidates run in parallel, or all of them for one).
func TestFineTunerWorkersBitwise(t *testing.T) {
	rc := randCfg{Heads: 4, KV: 2, HD: 16, Hidden: 64, Inter: 96, Vocab: 300, Layers: 2, Tied: true}
	seqs := testSeqs(3, 48, rc.Vocab, 6)
	o := SelectionPreset()
	o.LR = 1e-3
	var ref []float32
	for _, w := range []int{1, 2, 3} {
		m := randomModel(rc, true, 1)
		if _, err := NewFineTuner(cpubackend.New().WithWorkers(w), o).Train(m, seqs); err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = flatWeights(m)
		} else if !slices.Equal(ref, flatWeights(m)) {
			t.Errorf("%d workers differ from 1", w)
		}
	}
}

// A Pool (candidates in parallel, one single-worker FineTuner each) gives
// bitwise the serial results, in input order.
func TestPoolMatchesSerial(t *testing.T) {
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 3}
	seqs := testSeqs(3, 10, rc.Vocab, 4)
	o := SelectionPreset()
	o.LR = 1e-3
	var pm, sm []*model.Model
	for i := 0; i < 5; i++ {
		pm = append(pm, randomModel(rc, i%2 == 1, uint64(i)))
		sm = append(sm, randomModel(rc, i%2 == 1, uint64(i)))
	}
	stats, errs := NewPool(cpu(t), o, 2).Train(pm, seqs)
	ft := NewFineTuner(cpu(t), o)
	for i := range sm {
		st, err := ft.Train(sm[i], seqs)
		if err != nil || errs[i] != nil {
			t.Fatal(err, errs[i])
		}
		if st != stats[i] || !slices.Equal(flatWeights(pm[i]), flatWeights(sm[i])) {
			t.Errorf("candidate %d: pool differs from serial", i)
		}
	}
}
