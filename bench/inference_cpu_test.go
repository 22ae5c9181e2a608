package bench

import (
	"fmt"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/model"
)

// BenchmarkInferenceCPUTime is BenchmarkForward's workload (one or eight
// 256-token windows on the default CPU backend) reported as process CPU
// microseconds per token. On a shared, loaded machine wall-clock tokens/s
// swings by 3x between runs while CPU time per token stays within ~10%, so
// this is the figure to compare two builds with (run each alternately, with
// -cpu 1, and compare medians).
func BenchmarkInferenceCPUTime(b *testing.B) {
	if hub.Mirror() == "" {
		b.Skip("DARWINLM_HUB_MIRROR not set")
	}
	be, err := backend.Get("")
	if err != nil {
		b.Fatal(err)
	}
	for _, spec := range []struct{ name, model string }{
		{"TinyStories-656K", "hf:raincandy-u/TinyStories-656K"},
		{"stories260K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"},
	} {
		m, _, err := model.Open(spec.model, "")
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
			b.Run(fmt.Sprintf("%s/batch=%d", spec.name, batch), func(b *testing.B) {
				c0 := processCPU()
				for b.Loop() {
					m.Forward(be, seqs)
				}
				b.ReportMetric((processCPU()-c0)/float64(b.N*batch*256)*1e6, "cpu-us/token")
			})
		}
	}
}
