package train

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// Fine-tuning on a device that copies (weights uploaded, trained on the
// device, written back; the GPU code path, run by the host device's
// operations) gives bitwise the host fine-tuning: AdamW fused on the
// device, AdamW with clipping and SGD (the norm, clipping and SGD as device
// operations), and distillation from full and top-k teacher logits.
func TestFineTunerCopyDeviceMatchesHost(t *testing.T) {
	be := cpu(t)
	cb := modeltest.CopyBackend{Backend: be}
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 3, Tied: true, Bias: true}
	seqs := testSeqs(3, 10, rc.Vocab, 4)
	teacher := randomModel(rc, false, 9)
	for _, tc := range []struct {
		name string
		opt  func(*Options)
		topK int // −1: no teacher, 0: full logits
	}{
		{"adamw", func(*Options) {}, -1},
		{"adamw-clip", func(o *Options) { o.Clip = 0.5 }, -1},
		{"sgd", func(o *Options) { o.Optimizer = "sgd"; o.LR = 1e-2 }, -1},
		{"kd-full", func(o *Options) { o.KDWeight = 0.5 }, 0},
		{"kd-topk", func(o *Options) { o.KDWeight = 0.7 }, 5},
		{"saveprobs", func(o *Options) { o.SaveProbs = true }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := SelectionPreset()
			o.LR = 1e-3
			tc.opt(&o)
			var tl []TeacherLogits
			if tc.topK >= 0 {
				var err error
				if tl, err = CacheTeacher(be, teacher, seqs, tc.topK); err != nil {
					t.Fatal(err)
				}
			}
			var stats []FineTuneStats
			var weights [][]float32
			for _, b := range []interface{ Name() string }{be, cb} {
				m := randomModel(rc, true, 3)
				ft := NewFineTuner(be, o)
				if b == cb {
					ft = NewFineTuner(cb, o)
					if _, ok := ft.Device().(modeltest.CopyDevice); !ok {
						t.Fatal("the fine-tuner does not run on the backend's device")
					}
				}
				var st FineTuneStats
				var err error
				if tl != nil {
					st, err = ft.TrainDistill(m, seqs, tl)
				} else {
					st, err = ft.Train(m, seqs)
				}
				if err != nil {
					t.Fatal(err)
				}
				stats, weights = append(stats, st), append(weights, flatWeights(m))
			}
			if stats[0] != stats[1] {
				t.Errorf("stats: device %+v, host %+v", stats[1], stats[0])
			}
			if slices.Equal(weights[0], flatWeights(randomModel(rc, true, 3))) {
				t.Fatal("fine-tuning did not change the weights")
			}
			if !slices.Equal(weights[0], weights[1]) {
				t.Error("trained weights differ between the copying device and the host")
			}
		})
	}
}

// TrainResident trains weights kept on the device, bitwise as Train.
func TestTrainResident(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2}
	seqs := testSeqs(2, 9, rc.Vocab, 5)
	o := SelectionPreset()
	o.LR = 1e-3
	a, b := randomModel(rc, true, 1), randomModel(rc, true, 1)
	if _, err := NewFineTuner(be, o).Train(a, seqs); err != nil {
		t.Fatal(err)
	}
	ft := NewFineTuner(modeltest.CopyBackend{Backend: be}, o)
	r, err := b.Upload(ft.Device())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ft.TrainResident(r, seqs); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(flatWeights(a), flatWeights(b)) {
		t.Fatal("the host model changed without a write-back")
	}
	if err := b.WriteBack(r); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if !slices.Equal(flatWeights(a), flatWeights(b)) {
		t.Error("TrainResident + WriteBack differs from Train")
	}
	// Weights of another device are refused.
	r2, _ := b.Upload(modeltest.NewCopyDevice(be))
	if _, err := ft.TrainResident(r2, seqs); err == nil {
		t.Error("weights on another device accepted")
	}
}

// The Trainer on a device that copies (weights, gradients and optimizer
// state resident, written back at the end; the GPU code path) is bitwise
// the host Trainer, with clipping and distillation from a full or top-k
// teacher.
func TestTrainerCopyDeviceMatchesHost(t *testing.T) {
	be := cpu(t)
	cb := modeltest.CopyBackend{Backend: be}
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2, Bias: true, MLPBias: true}
	batches := [][][]int{testSeqs(2, 9, rc.Vocab, 1), testSeqs(2, 9, rc.Vocab, 2), testSeqs(2, 9, rc.Vocab, 3)}
	for _, topK := range []int{-1, 0, 4} {
		o := Options{Optimizer: "adamw", LR: 1e-2, Schedule: "constant", Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Clip: 0.5, Steps: len(batches)}
		var teacher = randomModel(rc, false, 8)
		if topK < 0 {
			teacher = nil
		} else {
			o.KDWeight, o.KDTopK = 0.5, topK
		}
		var ws [][]float32
		var stats [][]StepStats
		for _, b := range []interface{ Name() string }{be, cb} {
			m := randomModel(rc, true, 6)
			var tr *Trainer
			var err error
			if b == cb {
				tr, err = NewTrainer(cb, m, teacher, o)
			} else {
				tr, err = NewTrainer(be, m, teacher, o)
			}
			if err != nil {
				t.Fatal(err)
			}
			var ss []StepStats
			for _, seqs := range batches {
				st, err := tr.TrainStep(seqs)
				if err != nil {
					t.Fatal(err)
				}
				ss = append(ss, st)
			}
			tr.Close()
			ws, stats = append(ws, flatWeights(m)), append(stats, ss)
		}
		if !slices.Equal(stats[0], stats[1]) {
			t.Errorf("topK %d: steps %+v, host %+v", topK, stats[1], stats[0])
		}
		if !slices.Equal(ws[0], ws[1]) {
			t.Errorf("topK %d: trained weights differ between the copying device and the host", topK)
		}
	}
}

// A non-finite gradient stops fine-tuning with an error naming its step,
// though the device reports it one step later (with the next loss, or at
// the final sync): the stats are those of the steps before it.
func TestFineTunerNonFiniteGradient(t *testing.T) {
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2}
	seqs := testSeqs(4, 9, rc.Vocab, 5)
	for _, bad := range []int{2, 4} {
		ft := NewFineTuner(cpu(t), SelectionPreset())
		ft.onStep = func(step int, params, grads []Tensor[float32]) {
			if step == bad {
				grads[1].Data[3] = float32(math.Inf(1)) // host views: the device's gradient
			}
		}
		st, err := ft.Train(randomModel(rc, true, 2), seqs)
		want := fmt.Sprintf("fine-tuning step %d: a gradient is not finite", bad)
		if err == nil || err.Error() != want {
			t.Fatalf("bad step %d: error %v, want %q", bad, err, want)
		}
		if st.Steps != bad-1 {
			t.Errorf("bad step %d: %d steps reported, want %d", bad, st.Steps, bad-1)
		}
	}
}

// A closed FineTuner trains again, bitwise as a fresh one.
func TestFineTunerClose(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2}
	seqs := testSeqs(2, 9, rc.Vocab, 7)
	for _, b := range []interface{ Name() string }{be, modeltest.CopyBackend{Backend: be}} {
		ft := NewFineTuner(be, SelectionPreset())
		if b != be {
			ft = NewFineTuner(modeltest.CopyBackend{Backend: be}, SelectionPreset())
		}
		a, c := randomModel(rc, true, 1), randomModel(rc, true, 1)
		if _, err := ft.Train(a, seqs); err != nil {
			t.Fatal(err)
		}
		ft.Close()
		if _, err := ft.Train(c, seqs); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(flatWeights(a), flatWeights(c)) {
			t.Errorf("%s: training after Close differs", b.Name())
		}
	}
}
