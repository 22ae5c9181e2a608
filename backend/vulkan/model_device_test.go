//go:build vulkan && cgo

package vulkan

// Model-level cross-checks of the device-resident path: the training graph
// (forward, device cross-entropy, backward) and the fine-tuner on the
// Vulkan device against the CPU host device, both tiny models.

import (
	"math"
	"os"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

func needMirror(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
}

func targetsOf(seqs [][]int) []int {
	var tg []int
	for _, s := range seqs {
		for i := range s {
			if i+1 < len(s) {
				tg = append(tg, s[i+1])
			} else {
				tg = append(tg, -1)
			}
		}
	}
	return tg
}

// maxRelDiff is max|a−b| / max|a| over a tensor.
func maxRelDiff(a, b []float32) (float64, float64) {
	var mx, diff float64
	for j, v := range a {
		mx = math.Max(mx, math.Abs(float64(v)))
		diff = math.Max(diff, math.Abs(float64(v)-float64(b[j])))
	}
	return diff / math.Max(mx, 1e-30), mx
}

// TestDeviceGraphGradients: one forward, device cross-entropy and backward
// of a packed batch through train's device graph on Vulkan vs the CPU
// host device: loss within 1e-5 relative, every gradient tensor within
// 1e-4·max|g| (the op tolerance grown through the layers), with saved and
// with recomputed attention probabilities.
func TestDeviceGraphGradients(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	for mi, spec := range []string{"hf:raincandy-u/TinyStories-656K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"} {
		var grads [2][]train.Tensor[float32]
		var loss [2]float64
		for i, dev := range []backend.Device[float32]{nn.NewHost[float32](cpu.New()), d.F32()} {
			m, _, err := model.Open(spec, "")
			if err != nil {
				t.Fatal(err)
			}
			seqs := pseudoSeqs(3, 37+mi, m.Cfg.Vocab)
			seqs[1] = seqs[1][:20] // ragged batch
			r, err := m.Upload(dev)
			if err != nil {
				t.Fatal(err)
			}
			g := train.NewDeviceGraph(r)
			g.SaveProbs = mi == 0
			z, err := g.ForwardView(seqs)
			if err != nil {
				t.Fatal(err)
			}
			dl := g.Arena().Take(z.N)
			if loss[i], err = dev.CrossEntropy(dl, z, targetsOf(seqs), m.Cfg.Vocab, 1); err != nil {
				t.Fatal(err)
			}
			hdl := make([]float32, z.N)
			if err := dev.Download(hdl, dl); err != nil {
				t.Fatal(err)
			}
			gw := train.ZeroLike(train.FromModel(m))
			g.Backward(hdl, gw)
			grads[i] = gw.Tensors()
			if err := dev.Sync(); err != nil {
				t.Fatal(err)
			}
			g.Free()
			r.Release()
		}
		if math.Abs(loss[1]-loss[0]) > 1e-5*loss[0] {
			t.Errorf("%s: loss %v vs CPU %v", spec, loss[1], loss[0])
		}
		worst := 0.0
		for k, g := range grads[0] {
			rel, mx := maxRelDiff(g.Data, grads[1][k].Data)
			worst = math.Max(worst, rel)
			if rel > 1e-4 {
				t.Errorf("%s %s: max |Δgrad| %.2e of max |grad| %.2e", spec, g.Name, rel, mx)
			}
		}
		t.Logf("%s: loss cpu %.7f vulkan %.7f; %d gradient tensors, worst max|Δg|/max|g| %.1e", spec, loss[0], loss[1], len(grads[0]), worst)
	}
	usedPrograms(t, d, "attn", "attn_ds", "attn_dq", "attn_dkv", "rope_seq", "xent_set", "rmsnorm_bwd_dx", "swiglu_bwd", "embed_bwd")
}

// TestDeviceFineTune: two SGD fine-tuning steps (forward, loss, backward on
// the device; the host update) with FineTuner on the Vulkan backend vs the
// CPU; every tensor's change within 1e-4 of the CPU's largest change.
func TestDeviceFineTune(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	vk := &Backend{d: d}
	spec := "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	opts := train.Options{Optimizer: "sgd", LR: 0.5, Schedule: "constant"}
	var after [2][]train.Tensor[float32]
	var before []train.Tensor[float32]
	var stats [2]train.FineTuneStats
	for i, be := range []backend.Backend{cpu.New(), vk} {
		m, _, err := model.Open(spec, "")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			for _, w := range train.FromModel(m).Tensors() {
				before = append(before, train.Tensor[float32]{Name: w.Name, Data: append([]float32(nil), w.Data...)})
			}
		}
		f := train.NewFineTuner(be, opts)
		if stats[i], err = f.Train(m, pseudoSeqs(2, 48, m.Cfg.Vocab)); err != nil {
			t.Fatal(err)
		}
		after[i] = train.FromModel(m).Tensors()
	}
	if math.Abs(stats[1].MeanLoss-stats[0].MeanLoss) > 1e-5*stats[0].MeanLoss {
		t.Errorf("mean loss %v vs CPU %v", stats[1].MeanLoss, stats[0].MeanLoss)
	}
	for k, w := range after[0] {
		var mx, diff float64
		for j, v := range w.Data {
			mx = math.Max(mx, math.Abs(float64(v)-float64(before[k].Data[j])))
			diff = math.Max(diff, math.Abs(float64(v)-float64(after[1][k].Data[j])))
		}
		if diff > 1e-4*mx {
			t.Errorf("%s: max |Δw vulkan − Δw cpu| %.2e, max |Δw| %.2e", w.Name, diff, mx)
		}
	}
	t.Logf("mean loss cpu %.7f vulkan %.7f over %d steps", stats[0].MeanLoss, stats[1].MeanLoss, stats[1].Steps)
	usedPrograms(t, d, "attn_ds", "xent_set")
}
