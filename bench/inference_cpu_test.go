package bench

import (
	"fmt"
	"testing"
)

// BenchmarkInferenceCPUTime is BenchmarkForward's workload (one or eight
// 256-token windows on the default CPU backend) reported as process CPU
// microseconds per token. On a shared, loaded machine wall-clock tokens/s
// swings by 3x between runs while CPU time per token stays within ~10%, so
// this is the figure to compare two builds with (run each alternately, with
// -cpu 1, and compare medians).
func BenchmarkInferenceCPUTime(b *testing.B) {
	models := tinyModels(b)
	be := defaultBackend(b)
	for _, tm := range models {
		m := tm.m
		for _, batch := range []int{1, 8} {
			seqs := windows(batch, m.Cfg.Vocab)
			b.Run(fmt.Sprintf("%s/batch=%d", tm.name, batch), func(b *testing.B) {
				c0 := processCPU()
				for b.Loop() {
					m.Forward(be, seqs)
				}
				b.ReportMetric((processCPU()-c0)/float64(b.N*batch*256)*1e6, "cpu-us/token")
			})
		}
	}
}
