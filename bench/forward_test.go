package bench

import (
	"fmt"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/model"
)

// BenchmarkForward reports forward-pass throughput (tokens/s) of the two
// tiny real checkpoints on each CPU backend variant, for one window of 256
// tokens and a batch of 8 windows.
func BenchmarkForward(b *testing.B) {
	if hub.Mirror() == "" {
		b.Skip("DARWINLM_HUB_MIRROR not set")
	}
	for _, spec := range []struct{ name, model, tok string }{
		{"TinyStories-656K", "hf:raincandy-u/TinyStories-656K", ""},
		{"stories260K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin", ""},
	} {
		m, _, err := model.Open(spec.model, spec.tok)
		if err != nil {
			b.Fatal(err)
		}
		for _, beName := range []string{"cpu", "purego"} {
			be, err := backend.Get(beName)
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int{1, 8} {
				seqs := make([][]int, batch)
				for i := range seqs {
					seqs[i] = make([]int, 256)
					for j := range seqs[i] {
						seqs[i][j] = (i*131 + j*17) % m.Cfg.Vocab
					}
				}
				b.Run(fmt.Sprintf("%s/%s/batch=%d", spec.name, be.Name(), batch), func(b *testing.B) {
					for b.Loop() {
						m.Forward(be, seqs)
					}
					b.ReportMetric(float64(b.N*batch*256)/b.Elapsed().Seconds(), "tokens/s")
				})
			}
		}
	}
}
