package train

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// busDevice is a copying device (modeltest.CopyDevice, the GPU code path)
// that counts the host transfers: Upload, Download and Resident calls.
type busDevice struct {
	modeltest.CopyDevice
	n *atomic.Int64
}

func (d busDevice) Upload(dst backend.View, src []float32) error {
	d.n.Add(1)
	return d.CopyDevice.Upload(dst, src)
}

func (d busDevice) Download(dst []float32, src backend.View) error {
	d.n.Add(1)
	return d.CopyDevice.Download(dst, src)
}

func (d busDevice) Resident(host []float32) (backend.View, error) {
	d.n.Add(1)
	return d.CopyDevice.Resident(host)
}

// busBackend hands out busDevices sharing one counter.
type busBackend struct {
	backend.Backend
	n *atomic.Int64
}

func (b busBackend) Float32Device() backend.Device[float32] {
	return busDevice{modeltest.NewCopyDevice(b.Backend), b.n}
}

// trainerOpts are the optimizer settings of the Trainer device tests.
func trainerOpts(steps int) map[string]Options {
	base := Options{Optimizer: "adamw", LR: 1e-2, Schedule: "cosine", Warmup: 1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Steps: steps}
	clip := base
	clip.Clip = 0.5
	sgd := Options{Optimizer: "sgd", LR: 5e-2, Schedule: "linear", WeightDecay: 0.01, Steps: steps}
	sgdClip := sgd
	sgdClip.Clip = 0.3
	return map[string]Options{"adamw": base, "adamw-clip": clip, "sgd": sgd, "sgd-clip": sgdClip}
}

// The Trainer on a copying device (weights, gradients and optimizer state
// resident; the GPU code path) is bitwise the host Trainer for AdamW and SGD
// with and without clipping, and no tensor crosses the bus during a step
// (only the loss and the gradient norm, scalars, come back) but for the
// schedule's last, which writes the weights back into the model (one
// download per tensor). An optimizer the device has no kernel for runs on
// host copies, bitwise too.
func TestTrainerDeviceStepMatchesHost(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2, Bias: true, MLPBias: true, Tied: true}
	batches := [][][]int{testSeqs(2, 9, rc.Vocab, 1), testSeqs(3, 7, rc.Vocab, 2), testSeqs(2, 9, rc.Vocab, 3), testSeqs(1, 11, rc.Vocab, 4)}
	for name, o := range trainerOpts(len(batches)) {
		for _, custom := range []bool{false, true} {
			var ws [][]float32
			var stats [][]StepStats
			var n atomic.Int64
			for _, b := range []backend.Backend{be, busBackend{be, &n}} {
				m := randomModel(rc, true, 6)
				tr, err := NewTrainer(b, m, nil, o)
				if err != nil {
					t.Fatal(err)
				}
				if custom {
					tr.Opt = hostOnly{tr.Opt}
				}
				var ss []StepStats
				last := len(batches) - 1
				for i, seqs := range batches {
					if i == last && b != be && !custom && !slices.Equal(flatWeights(m), flatWeights(randomModel(rc, true, 6))) {
						t.Errorf("%s: the host model changed before the last step", name)
					}
					before := n.Load()
					st, err := tr.TrainStep(seqs)
					if err != nil {
						t.Fatal(err)
					}
					want := int64(0)
					if i == last {
						want = int64(len(tr.Params()))
					}
					if moved := n.Load() - before; b != be && !custom && i > 0 && moved != want {
						t.Errorf("%s: step %d made %d host transfers, want %d", name, i+1, moved, want)
					}
					ss = append(ss, st)
				}
				if err := tr.Close(); err != nil {
					t.Fatal(err)
				}
				ws, stats = append(ws, flatWeights(m)), append(stats, ss)
			}
			if slices.Equal(ws[0], flatWeights(randomModel(rc, true, 6))) {
				t.Fatalf("%s: training did not change the weights", name)
			}
			if !slices.Equal(stats[0], stats[1]) {
				t.Errorf("%s (custom %v): steps %+v, host %+v", name, custom, stats[1], stats[0])
			}
			if !slices.Equal(ws[0], ws[1]) {
				t.Errorf("%s (custom %v): trained weights differ between the copying device and the host", name, custom)
			}
		}
	}
}

// hostOnly is an optimizer the device has no kernel for (it hides the
// type of the one it wraps).
type hostOnly struct{ Optimizer }

// Checkpoints written from a copying device hold the host run's weights
// and optimizer state, and resuming from one on a copying device continues
// bitwise as the uninterrupted host run (the state is downloaded only to
// save and uploaded only to load).
func TestTrainerDeviceCheckpointResume(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2, Bias: true}
	toks := testSeqs(1, 400, rc.Vocab, 9)[0]
	settings := json.RawMessage(`{}`)
	const steps, cut = 5, 2
	for name, o := range trainerOpts(steps) {
		run := func(b backend.Backend, m0 int, from string, n int, save string) ([]float32, []StepStats) {
			m := randomModel(rc, true, 6)
			tr, err := NewTrainer(b, m, nil, o)
			if err != nil {
				t.Fatal(err)
			}
			ld, err := NewLoader(toks, 12, 2, 5)
			if err != nil {
				t.Fatal(err)
			}
			if from != "" {
				if _, _, err := LoadCheckpoint(from, tr, ld); err != nil {
					t.Fatal(err)
				}
			}
			var ss []StepStats
			for tr.Step < n {
				st, err := tr.TrainStep(ld.Next())
				if err != nil {
					t.Fatal(err)
				}
				ss = append(ss, st)
			}
			if save != "" {
				if _, err := SaveCheckpoint(save, tr, ld, 0, settings, nil, nil, 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			return flatWeights(m), ss
		}
		var n atomic.Int64
		dev := busBackend{be, &n}
		hostDir, devDir := t.TempDir(), t.TempDir()
		_, hs1 := run(be, 0, "", cut, hostDir)
		want, hs2 := run(be, 0, latest(t, hostDir), steps, "")
		_, ds1 := run(dev, 0, "", cut, devDir)
		got, ds2 := run(dev, 0, latest(t, devDir), steps, "")
		if !slices.Equal(append(hs1, hs2...), append(ds1, ds2...)) {
			t.Errorf("%s: steps differ: device %+v, host %+v", name, append(ds1, ds2...), append(hs1, hs2...))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: resumed weights differ between the copying device and the host", name)
		}
		hp, err := ReadParams(latest(t, hostDir))
		if err != nil {
			t.Fatal(err)
		}
		dp, err := ReadParams(latest(t, devDir))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hp {
			if !slices.Equal(v, dp[k]) {
				t.Errorf("%s: checkpoint tensor %s differs", name, k)
			}
		}
		// An uninterrupted host run ends where the resumed ones do.
		full, _ := run(be, 0, "", steps, "")
		if !slices.Equal(full, want) {
			t.Errorf("%s: resuming on the host is not bitwise the uninterrupted run", name)
		}
	}
}

func latest(t *testing.T, out string) string {
	t.Helper()
	d, err := LatestCheckpoint(out)
	if err != nil || d == "" {
		t.Fatalf("no checkpoint in %s: %v", out, err)
	}
	return d
}

// Fine-tuning weights kept resident on a copying device moves no tensor
// across the bus with clipping or SGD either (the norm is a device
// reduction, clipping and SGD device operations).
func TestFineTunerResidentNoTransfers(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2}
	seqs := testSeqs(3, 9, rc.Vocab, 5)
	for name, o := range map[string]func(*Options){
		"adamw-clip": func(o *Options) { o.Clip = 0.5 },
		"sgd":        func(o *Options) { o.Optimizer = "sgd"; o.LR = 1e-2 },
		"sgd-clip":   func(o *Options) { o.Optimizer = "sgd"; o.LR = 1e-2; o.Clip = 0.1 },
	} {
		opts := SelectionPreset()
		o(&opts)
		var n atomic.Int64
		ft := NewFineTuner(busBackend{be, &n}, opts)
		m := randomModel(rc, true, 1)
		r, err := m.Upload(ft.Device())
		if err != nil {
			t.Fatal(err)
		}
		n.Store(0)
		if _, err := ft.TrainResident(r, seqs); err != nil {
			t.Fatal(err)
		}
		if n.Load() != 0 {
			t.Errorf("%s: %d host transfers while fine-tuning resident weights, want none", name, n.Load())
		}
		r.Release()
	}
}

// Distillation in the Trainer keeps the teacher resident too: a step with
// full-vocabulary KL moves no tensor across the bus and one with top-k KL
// downloads only the teacher's logits for the host's top-k selection (the
// last step also writes the weights back); the result is bitwise the
// host's.
func TestTrainerDeviceTeacherResident(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2}
	teacher := randomModel(rc, false, 8)
	batches := [][][]int{testSeqs(2, 9, rc.Vocab, 1), testSeqs(2, 9, rc.Vocab, 2), testSeqs(2, 9, rc.Vocab, 3)}
	for _, topK := range []int{0, 4} {
		o := Options{Optimizer: "adamw", LR: 1e-2, Schedule: "constant", Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Clip: 0.5,
			Steps: len(batches), KDWeight: 0.5, KDTopK: topK}
		var ws [][]float32
		var n atomic.Int64
		for _, b := range []backend.Backend{be, busBackend{be, &n}} {
			m := randomModel(rc, true, 6)
			tr, err := NewTrainer(b, m, teacher, o)
			if err != nil {
				t.Fatal(err)
			}
			for i, seqs := range batches {
				before := n.Load()
				if _, err := tr.TrainStep(seqs); err != nil {
					t.Fatal(err)
				}
				want := int64(0)
				if topK > 0 {
					want = 1
				}
				if i == len(batches)-1 {
					want += int64(len(tr.Params()))
				}
				if moved := n.Load() - before; b != be && i > 0 && moved != want {
					t.Errorf("top-k %d: step %d made %d host transfers, want %d", topK, i+1, moved, want)
				}
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			ws = append(ws, flatWeights(m))
		}
		if !slices.Equal(ws[0], ws[1]) {
			t.Errorf("top-k %d: trained weights differ between the copying device and the host", topK)
		}
	}
}
