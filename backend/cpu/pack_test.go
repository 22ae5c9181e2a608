//go:build linux

package cpu

import (
	"math"
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

// TestCopyChunks checks the panel mover against its Go twin for every
// kernel width and an odd one, odd counts and strides, and that nothing
// outside the chunks is written.
func TestCopyChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, w := range []int{6, 8, 12, 16, 32, 5} {
		for _, n := range []int{1, 2, 7, 33} {
			for _, c := range []struct{ ds, ss int }{{w, w}, {w, 37}, {3 * w, w}, {w + 1, 129}} {
				src := randVec(r, (n-1)*c.ss+w+3)
				got := make([]float32, (n-1)*c.ds+w+5)
				want := make([]float32, len(got))
				for i := range got {
					got[i], want[i] = -1, -1
				}
				copyChunks(got, c.ds, src, c.ss, n, w)
				for k := 0; k < n; k++ {
					for i := 0; i < w; i++ {
						want[k*c.ds+i] = src[k*c.ss+i]
					}
				}
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("w=%d n=%d ds=%d ss=%d: [%d] = %v, want %v", w, n, c.ds, c.ss, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestPadChunks: ragged panel rows with their zero padding against the Go
// twin, every row count up to every kernel width, odd strides, nothing
// written past a chunk's w floats.
func TestPadChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, w := range []int{6, 8, 12, 16, 32} {
		for rows := 0; rows <= w; rows++ {
			for _, n := range []int{1, 3, 17} {
				for _, c := range []struct{ ds, ss int }{{w, rows + 1}, {w + 3, 37}, {2 * w, 129}} {
					src := randVec(r, (n-1)*c.ss+rows)
					got := make([]float32, (n-1)*c.ds+w+4)
					want := make([]float32, len(got))
					for i := range got {
						got[i], want[i] = -1, -1
					}
					padChunks(got, c.ds, src, c.ss, n, rows, w)
					padChunksGo(want, c.ds, src, c.ss, n, rows, w)
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("w=%d rows=%d n=%d %+v: [%d] = %v, want %v", w, rows, n, c, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}
