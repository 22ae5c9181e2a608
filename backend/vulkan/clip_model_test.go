//go:build vulkan && cgo

package vulkan

import (
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/train"
)

// stepSeqs is batch number step: n sequences of T tokens.
func stepSeqs(step, n, T, vocab int) [][]int {
	s := make([][]int, n)
	for i := range s {
		s[i] = make([]int, T)
		for j := range s[i] {
			s[i][j] = (i*131 + j*17 + step*61) % vocab
		}
	}
	return s
}

// TestDeviceTrainerClip: train.Trainer steps of stories260K on Vulkan
// (forward, backward, gradient norm, clipping and the optimizer on the
// device; the weights written back only by Close) vs the CPU, with AdamW
// clipped at a norm below the gradients' (as the experiments' post-training
// clips at 1.0) and with clipped SGD. Per step the loss and gradient norm
// agree within 1e-4 relative; after the steps each tensor's change agrees
// within 1e-4·max|Δw| for SGD (linear in the gradient, the tolerance of
// TestDeviceFineTune) and within 1e-3 in Frobenius norm for AdamW (whose
// first steps move each weight by about ±lr, so gradients near 0 may flip
// the sign of a few updates; lavapipe: 6e-6 and 6e-5).
func TestDeviceTrainerClip(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	vk := &Backend{d: d}
	spec := "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	for _, o := range []train.Options{
		{Optimizer: "adamw", LR: 1e-3, Schedule: "constant", Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Clip: 0.05, Steps: 3},
		{Optimizer: "sgd", LR: 0.5, Schedule: "constant", WeightDecay: 0.01, Clip: 0.05, Steps: 3},
	} {
		t.Run(o.Optimizer, func(t *testing.T) {
			var stats [2][]train.StepStats
			var after [2][]train.Tensor[float32]
			var before []train.Tensor[float32]
			for i, be := range []backend.Backend{cpu.New(), vk} {
				m := openModel(t, spec)
				if i == 0 {
					before = snapshot(m)
				}
				tr, err := train.NewTrainer(be, m, nil, o)
				if err != nil {
					t.Fatal(err)
				}
				for s := 0; s < o.Steps; s++ {
					st, err := tr.TrainStep(stepSeqs(s, 2, 33, m.Cfg.Vocab))
					if err != nil {
						t.Fatal(err)
					}
					stats[i] = append(stats[i], st)
				}
				if err := tr.Close(); err != nil {
					t.Fatal(err)
				}
				after[i] = train.FromModel(m).Tensors()
			}
			for s := range stats[0] {
				c, v := stats[0][s], stats[1][s]
				if math.Abs(v.Loss-c.Loss) > 1e-4*c.Loss || math.Abs(v.GradNorm-c.GradNorm) > 1e-4*c.GradNorm {
					t.Errorf("step %d: loss %.7f norm %.7f, CPU %.7f %.7f", s+1, v.Loss, v.GradNorm, c.Loss, c.GradNorm)
				}
				if c.GradNorm <= o.Clip {
					t.Fatalf("step %d: gradient norm %v does not exceed the clip %v", s+1, c.GradNorm, o.Clip)
				}
				t.Logf("step %d: loss cpu %.7f vulkan %.7f; norm cpu %.7f vulkan %.7f", s+1, c.Loss, v.Loss, c.GradNorm, v.GradNorm)
			}
			worst := 0.0
			for k, w := range after[0] {
				var mx, diff, num, den float64
				for j, v := range w.Data {
					dc := float64(v) - float64(before[k].Data[j])
					dv := float64(after[1][k].Data[j]) - float64(before[k].Data[j])
					mx = math.Max(mx, math.Abs(dc))
					diff = math.Max(diff, math.Abs(dc-dv))
					num += (dc - dv) * (dc - dv)
					den += dc * dc
				}
				if mx == 0 {
					t.Fatalf("%s did not change", w.Name)
				}
				if o.Optimizer == "sgd" {
					worst = math.Max(worst, diff/mx)
					if diff > 1e-4*mx {
						t.Errorf("%s: max |Δw vulkan − Δw cpu| %.2e, max |Δw| %.2e", w.Name, diff, mx)
					}
				} else {
					rel := math.Sqrt(num / den)
					worst = math.Max(worst, rel)
					if rel > 1e-3 {
						t.Errorf("%s: ‖Δw vulkan − Δw cpu‖/‖Δw cpu‖ = %.2e", w.Name, rel)
					}
				}
			}
			t.Logf("%s: worst weight-change difference %.2e", o.Optimizer, worst)
		})
	}
	usedPrograms(t, d, "sumsq", "scale", "sgd", "adamw_step")
}

// TestDeviceTrainerResume: on Vulkan, saving a checkpoint (weights and
// AdamW state downloaded), loading it into a new Trainer (uploaded) and
// continuing gives bitwise the uninterrupted run on the same device.
func TestDeviceTrainerResume(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	vk := &Backend{d: d}
	spec := "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	o := train.Options{Optimizer: "adamw", LR: 1e-3, Schedule: "cosine", Warmup: 1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Clip: 1, Steps: 4}
	toks := stepSeqs(0, 1, 2000, 512)[0]
	run := func(from, save string, n int) ([]float32, []train.StepStats) {
		m := openModel(t, spec)
		tr, err := train.NewTrainer(vk, m, nil, o)
		if err != nil {
			t.Fatal(err)
		}
		ld, err := train.NewLoader(toks, 32, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		if from != "" {
			if _, _, err := train.LoadCheckpoint(from, tr, ld); err != nil {
				t.Fatal(err)
			}
		}
		var ss []train.StepStats
		for tr.Step < n {
			st, err := tr.TrainStep(ld.Next())
			if err != nil {
				t.Fatal(err)
			}
			ss = append(ss, st)
		}
		if save != "" {
			if _, err := train.SaveCheckpoint(save, tr, ld, 0, json.RawMessage(`{}`), nil, nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		var w []float32
		for _, p := range train.FromModel(m).Tensors() {
			w = append(w, p.Data...)
		}
		return w, ss
	}
	want, ws := run("", "", o.Steps)
	dir := t.TempDir()
	_, s1 := run("", dir, 2)
	ck, err := train.LatestCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, s2 := run(ck, "", o.Steps)
	if !slices.Equal(ws, append(s1, s2...)) {
		t.Errorf("steps %v, uninterrupted %v", append(s1, s2...), ws)
	}
	if !slices.Equal(got, want) {
		t.Error("resumed weights differ from the uninterrupted run")
	}
	t.Logf("%d steps, resumed after 2: bitwise", o.Steps)
}

// TestDeviceTrainerDistill: Trainer steps with distillation from a
// resident teacher (stories260K with a sharpened head) on Vulkan vs the
// CPU, full-vocabulary and top-8 KL: loss, KL and gradient norm within 1e-4
// relative per step.
func TestDeviceTrainerDistill(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	vk := &Backend{d: d}
	spec := "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	for _, k := range []int{0, 8} {
		o := train.Options{Optimizer: "adamw", LR: 1e-3, Schedule: "constant", Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Clip: 1, Steps: 2, KDWeight: 0.5, KDTopK: k}
		var stats [2][]train.StepStats
		for i, be := range []backend.Backend{cpu.New(), vk} {
			m := openModel(t, spec)
			teach := openModel(t, spec)
			for j := range teach.Norm {
				teach.Norm[j] *= 1.7
			}
			tr, err := train.NewTrainer(be, m, teach, o)
			if err != nil {
				t.Fatal(err)
			}
			for s := 0; s < o.Steps; s++ {
				st, err := tr.TrainStep(stepSeqs(s, 2, 29, m.Cfg.Vocab))
				if err != nil {
					t.Fatal(err)
				}
				stats[i] = append(stats[i], st)
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
		}
		for s := range stats[0] {
			c, v := stats[0][s], stats[1][s]
			if c.KD <= 0 {
				t.Fatalf("top-k %d step %d: KL %v on the CPU, want > 0", k, s+1, c.KD)
			}
			for _, p := range [][3]any{{"loss", v.Loss, c.Loss}, {"KL", v.KD, c.KD}, {"norm", v.GradNorm, c.GradNorm}} {
				if g, w := p[1].(float64), p[2].(float64); math.Abs(g-w) > 1e-4*math.Abs(w) {
					t.Errorf("top-k %d step %d: %s %.7g, CPU %.7g", k, s+1, p[0], g, w)
				}
			}
			t.Logf("top-k %d step %d: KL cpu %.7f vulkan %.7f", k, s+1, c.KD, v.KD)
		}
	}
	usedPrograms(t, d, "kl", "sparse_kl", "sumsq", "scale")
}
