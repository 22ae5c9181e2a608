package cpu

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkMicro measures the register-tile kernels alone with the panels
// in L1: the ceiling for the blocked driver.
func BenchmarkMicro(b *testing.B) {
	for v, kn := range kernels {
		b.Run(v, func(b *testing.B) {
			const k = 128
			r := rand.New(rand.NewPCG(1, 1))
			a, bb := randVec(r, kn.mr*k), randVec(r, kn.nr*k)
			c := make([]float32, kn.mr*kn.nr)
			for b.Loop() {
				kn.micro(a, bb, c, k, kn.nr, true, 1, kn.mr)
			}
			b.ReportMetric(2*float64(kn.mr*kn.nr*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
