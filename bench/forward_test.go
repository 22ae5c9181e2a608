package bench

import (
	"fmt"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
)

// BenchmarkForward reports forward-pass throughput (tokens/s) of the two
// tiny real checkpoints on each CPU backend variant, for one window of 256
// tokens and a batch of 8 windows.
func BenchmarkForward(b *testing.B) {
	for _, tm := range tinyModels(b) {
		m := tm.m
		for _, beName := range []string{"cpu", "purego"} {
			be, err := backend.Get(beName)
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int{1, 8} {
				seqs := windows(batch, m.Cfg.Vocab)
				b.Run(fmt.Sprintf("%s/%s/batch=%d", tm.name, be.Name(), batch), func(b *testing.B) {
					for b.Loop() {
						m.Forward(be, seqs)
					}
					b.ReportMetric(float64(b.N*batch*256)/b.Elapsed().Seconds(), "tokens/s")
				})
			}
		}
	}
}
