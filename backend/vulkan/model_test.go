//go:build vulkan && cgo

package vulkan

import (
	"math"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/train"
)

// TestTinyModelsPerplexity runs the whole forward pass of both tiny models
// through the Vulkan backend (host-slice interface) and compares the
// perplexity with the CPU backend's.
func TestTinyModelsPerplexity(t *testing.T) {
	needMirror(t)
	d, vk := openBackend(t)
	_, rows, _, err := eval.ReadRows("hf-dataset:roneneldan/TinyStories/default/validation_prefix")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range rows[:5] {
		parts = append(parts, r["text"].(string))
	}
	text := strings.Join(parts, "\n\n")
	for _, spec := range []string{"hf:raincandy-u/TinyStories-656K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"} {
		m, tok, err := model.Open(spec, "")
		if err != nil {
			t.Fatal(err)
		}
		want, err := eval.Perplexity(m, cpu.New(), tok, text, 128, nil)
		if err != nil {
			t.Fatal(err)
		}
		s0, d0 := d.Submits(), d.Dispatches()
		got, err := eval.Perplexity(m, vk, tok, text, 128, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d submits, %d dispatches and copies", spec, d.Submits()-s0, d.Dispatches()-d0)
		rel := math.Abs(got.PPL-want.PPL) / want.PPL
		t.Logf("%s: %d tokens, ppl cpu %.6f vulkan %.6f (rel %.1e)", spec, want.Tokens, want.PPL, got.PPL, rel)
		if rel > 1e-5 || got.Scored != want.Scored {
			t.Errorf("%s: ppl %v vs CPU %v", spec, got.PPL, want.PPL)
		}
	}
	usedPrograms(t, d, "attn", "rope_seq", "rmsnorm", "gemm_nt")
}

// openBackend opens the test device and a host-slice Backend on it whose
// scratch buffers are freed before the device is closed.
func openBackend(t *testing.T) (*Device, *Backend) {
	d := open(t, Options{})
	vk := &Backend{d: d}
	t.Cleanup(func() {
		for _, s := range vk.sc {
			s.Free()
		}
	})
	return d, vk
}

// usedPrograms fails unless the device ran every named program (so that a
// cross-check really ran on the device-resident path).
func usedPrograms(t *testing.T, d *Device, names ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range names {
		if d.pipes[n] == nil {
			t.Errorf("program %s never ran on the device", n)
		}
	}
}

// TestTinyModelGradients runs the loss and backward pass of stories260K
// through train.Trainer on the Vulkan backend (its graph runs on the device) and compares loss and every gradient with the
// CPU backend's: |Δg| ≤ 1e-4·max|g| per tensor (the GEMM tolerance, grown
// through the layers of the backward pass).
func TestTinyModelGradients(t *testing.T) {
	needMirror(t)
	d, vk := openBackend(t)
	spec := "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	var grads [2][]train.Tensor[float32]
	var loss [2]float64
	for i, be := range []backend.Backend{cpu.New(), vk} {
		m := openModel(t, spec)
		tr, err := train.NewTrainer(be, m, nil, train.Options{Optimizer: "adamw", LR: 1e-5, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Steps: 1})
		if err != nil {
			t.Fatal(err)
		}
		loss[i], _, _ = tr.Loss(pseudoSeqs(2, 64, m.Cfg.Vocab), true)
		grads[i] = tr.Grads()
	}
	if math.Abs(loss[1]-loss[0]) > 1e-5*loss[0] {
		t.Errorf("loss %v vs CPU %v", loss[1], loss[0])
	}
	for k, g := range grads[0] {
		var mx, diff float64
		for j, v := range g.Data {
			mx = math.Max(mx, math.Abs(float64(v)))
			diff = math.Max(diff, math.Abs(float64(v)-float64(grads[1][k].Data[j])))
		}
		if diff > 1e-4*mx {
			t.Errorf("%s: max |Δgrad| %.2e, max |grad| %.2e", g.Name, diff, mx)
		}
	}
	t.Logf("loss cpu %.7f vulkan %.7f, %d gradient tensors compared", loss[0], loss[1], len(grads[0]))
	usedPrograms(t, d, "attn", "attn_ds", "attn_dkv", "xent_set", "embed_bwd")
}
