//go:build vulkan && cgo

package vulkan

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/model"
)

// TestTinyModelsPerplexity runs the whole forward pass of both tiny models
// through the Vulkan backend (host-slice interface) and compares the
// perplexity with the CPU backend's.
func TestTinyModelsPerplexity(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
	d := open(t, Options{})
	vk := &Backend{d: d}
	defer func() {
		for _, s := range vk.sc {
			s.Free()
		}
	}()
	_, rows, _, err := eval.ReadRows("hf-dataset:roneneldan/TinyStories/default/validation_prefix")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range rows[:8] {
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
		got, err := eval.Perplexity(m, vk, tok, text, 128, nil)
		if err != nil {
			t.Fatal(err)
		}
		rel := math.Abs(got.PPL-want.PPL) / want.PPL
		t.Logf("%s: %d tokens, ppl cpu %.6f vulkan %.6f (rel %.1e)", spec, want.Tokens, want.PPL, got.PPL, rel)
		if rel > 1e-5 || got.Scored != want.Scored {
			t.Errorf("%s: ppl %v vs CPU %v", spec, got.PPL, want.PPL)
		}
	}
}
