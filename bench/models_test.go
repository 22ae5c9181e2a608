package bench

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/model"
)

// namedModel is one of the mirror's tiny real checkpoints.
type namedModel struct {
	name string
	m    *model.Model
}

// tinyModels opens TinyStories-656K and stories260K from the hub mirror,
// skipping the benchmark when there is none.
func tinyModels(b *testing.B) []namedModel {
	if hub.Mirror() == "" {
		b.Skip("DARWINLM_HUB_MIRROR not set")
	}
	var out []namedModel
	for _, spec := range []struct{ name, model string }{
		{"TinyStories-656K", "hf:raincandy-u/TinyStories-656K"},
		{"stories260K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"},
	} {
		m, _, err := model.Open(spec.model, "")
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, namedModel{spec.name, m})
	}
	return out
}

// defaultBackend is backend.Get(""), failing the benchmark on error.
func defaultBackend(b *testing.B) backend.Backend {
	be, err := backend.Get("")
	if err != nil {
		b.Fatal(err)
	}
	return be
}

// windows returns batch token windows of 256 tokens (fixed pseudo-text).
func windows(batch, vocab int) [][]int {
	seqs := make([][]int, batch)
	for i := range seqs {
		seqs[i] = make([]int, 256)
		for j := range seqs[i] {
			seqs[i][j] = (i*131 + j*17) % vocab
		}
	}
	return seqs
}
