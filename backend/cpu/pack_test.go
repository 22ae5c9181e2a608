//go:build linux

package cpu

import (
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
)

// BenchmarkPack times packing one kc×nc block out of a 4096-wide matrix in
// both source layouts, in GB/s of packed output.
func BenchmarkPack(b *testing.B) {
	for _, hot := range []int{0, 1} {
		benchPack(b, hot)
	}
}

func benchPack(b *testing.B, hot int) {
	const ld, kb, nb, w = 4096, 256, 512, 32
	r := rand.New(rand.NewPCG(1, 1))
	src := randVec(r, ld*ld)
	dst := make([]float32, kb*nb)
	for _, c := range []struct {
		name string
		v    view
	}{{"copy", view{src, 1, ld, nil}}, {"transpose", view{src, ld, 1, best().tr4}}} {
		b.Run(c.name+map[int]string{0: "/hot", 1: "/cold"}[hot], func(b *testing.B) {
			i := 0
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			t0 := threadCPU()
			for b.Loop() {
				// Walk through the matrix so the source is not cache-resident.
				r0 := (i * nb) % (ld - nb) * hot
				p0 := (i * kb) % (ld - kb) * hot
				c.v.pack(dst, r0, nb, p0, kb, w)
				i++
			}
			b.ReportMetric(float64(4*kb*nb)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			// On a shared machine the thread's own CPU time is steadier.
			b.ReportMetric(float64(4*kb*nb)*float64(b.N)/(threadCPU()-t0)/1e9, "cpuGB/s")
		})
	}
}

// threadCPU is the calling thread's user+system CPU time in seconds (Linux;
// 0 elsewhere, which makes the metric meaningless but harmless).
func threadCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
