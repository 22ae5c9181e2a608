package shear

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// The Sheared-LLaMA-2.7B shape (h 2560, 32 layers, 20 heads, I 6912,
// V 32000, untied) counts 2.70B by paper-notes (e); its config parses as
// any Llama checkpoint's.
func TestShearedLlamaShape(t *testing.T) {
	c, widths, err := model.LoadConfig("testdata/sheared-llama-2.7b.config.json")
	if err != nil {
		t.Fatalf("Sheared-LLaMA-2.7B config.json does not parse: %v", err)
	}
	if widths != nil || c.HeadDim != 128 || c.Tied || c.RopeTheta != 10000 {
		t.Fatalf("parsed %+v", c)
	}
	s := Shape{Layers: c.Layers, Hidden: c.Hidden, Heads: c.Heads, KVHeads: c.KVHeads, Inter: c.Intermediate}
	// Per layer 4·h² (q, k, v, o) + 3·h·I + 2·h; embedding and head V·h each; final norm h.
	want := int64(32*(4*2560*2560+3*2560*6912+2*2560) + 2*32000*2560 + 2560)
	if got := Params(c, s); got != want || got/10_000_000 != 270 {
		t.Fatalf("Sheared-LLaMA-2.7B shape: %d parameters, want %d (2.70B)", got, want)
	}
}

// With the Llama-2-7B config of the mirror: 6.738B dense, and the
// Sheared-LLaMA config read as a target gives the 2.7B shape.
func TestLlama2TargetFromConfig(t *testing.T) {
	mirror := os.Getenv("DARWINLM_HUB_MIRROR")
	path := filepath.Join(mirror, "models/meta-llama/Llama-2-7b-hf/config.json")
	if _, err := os.Stat(path); mirror == "" || err != nil {
		t.Skip("no Llama-2-7b-hf config in DARWINLM_HUB_MIRROR")
	}
	c, _, err := model.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	base := Shape{Layers: c.Layers, Hidden: c.Hidden, Heads: c.Heads, KVHeads: c.KVHeads, Inter: c.Intermediate}
	want := int64(32*(4*4096*4096+3*4096*11008+2*4096) + 2*32000*4096 + 4096)
	if got := Params(c, base); got != want || got/1_000_000 != 6738 {
		t.Fatalf("Llama-2-7B: %d parameters, want %d (6.738B)", got, want)
	}
	tg, err := TargetFromConfig("testdata/sheared-llama-2.7b.config.json", c, base)
	if err != nil {
		t.Fatal(err)
	}
	if tg != (Shape{Layers: 32, Hidden: 2560, Heads: 20, KVHeads: 20, Inter: 6912}) {
		t.Fatalf("target %v", tg)
	}
	if got := Params(c, tg); got/10_000_000 != 270 {
		t.Fatalf("target counts %d", got)
	}
}

// tinyStoriesShaped is a random model of TinyStories-656K's shape.
func tinyStoriesShaped() *model.Model {
	return modeltest.Random(modeltest.Cfg{Heads: 8, KV: 4, HD: 16, Hidden: 128, Inter: 384, Vocab: 2048, Layers: 2, Tied: true}, false, 1)
}

func TestTargetFromParams(t *testing.T) {
	m := tinyStoriesShaped()
	base, _ := BaseShape(m)
	if got := m.NumParams(); got != Params(m.Cfg, base) || got != 656000 {
		t.Fatalf("dense count %d, arithmetic %d, want 656000", got, Params(m.Cfg, base))
	}
	tg, err := TargetFromParams(328000, m.Cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	// Independently: hidden h = 16k, k heads, ⌈k/2⌉ K/V heads, MLP 3h, tied:
	// 2048·h + h + 2·(2·h·h + 2·h·16·⌈k/2⌉ + 9·h² + 2·h); closest to 328000.
	best, bestGap := 0, int64(1<<62)
	for k := 1; k < 8; k++ {
		h := int64(16 * k)
		n := 2048*h + h + 2*(2*h*h+2*h*16*int64((k+1)/2)+9*h*h+2*h)
		gap := max(n-328000, 328000-n)
		if gap < bestGap {
			best, bestGap = k, gap
		}
	}
	if want := (Shape{Layers: 2, Hidden: 16 * best, Heads: best, KVHeads: (best + 1) / 2, Inter: 48 * best}); tg != want {
		t.Fatalf("TargetFromParams(328000) = %v, want %v", tg, want)
	}
}

// Bad targets fail with a clear message before any compute.
func TestBadTargets(t *testing.T) {
	m := tinyStoriesShaped()
	base, _ := BaseShape(m)
	dir := t.TempDir()
	for _, c := range []struct{ cfg, want string }{
		{`{"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 16, "intermediate_size": 768}`, "larger than the model"},
		{`{"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 192}`, "larger than the model"},
		{`{"hidden_size": 64, "num_hidden_layers": 0, "num_attention_heads": 4, "intermediate_size": 192}`, "at least one"},
		{`{"hidden_size": 100, "num_hidden_layers": 2, "num_attention_heads": 5, "intermediate_size": 300}`, "head dimension 16 does not divide the target hidden size 100"},
		{`{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}`, "intermediate_size is missing"},
		{`{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 32, "intermediate_size": 192}`, "head_dim 32 differs"},
		{`{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 192, "vocab_size": 32000}`, "vocab_size"},
		{`{"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 384}`, "nothing to prune"},
		{`not json`, "invalid character"},
	} {
		p := filepath.Join(dir, "target.json")
		if err := os.WriteFile(p, []byte(c.cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := TargetFromConfig(p, m.Cfg, base)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming %s and saying %q", c.cfg, err, p, c.want)
		}
	}
	for _, n := range []int64{656000, 10_000_000, -5} {
		if _, err := TargetFromParams(n, m.Cfg, base); err == nil || !strings.Contains(err.Error(), "--target-params") {
			t.Errorf("TargetFromParams(%d): error %v", n, err)
		}
	}
	// Prune refuses before its first step.
	called := false
	for _, tg := range []Shape{
		{Layers: 0, Hidden: 64, Heads: 4, KVHeads: 2, Inter: 192},
		{Layers: 2, Hidden: 100, Heads: 4, KVHeads: 2, Inter: 192},
		{Layers: 2, Hidden: 256, Heads: 4, KVHeads: 2, Inter: 192},
	} {
		_, _, err := Prune(context.Background(), Config{Model: m, Backend: cpuBackend(t), Target: tg, Tokens: make([]int, 1000),
			SeqLen: 16, Batch: 2, Steps: 5, LR: 1e-3, LagLR: 1, OnStep: func(LogRow) { called = true }})
		if err == nil || called {
			t.Errorf("Prune to %v: error %v, steps run %v", tg, err, called)
		}
	}
}
