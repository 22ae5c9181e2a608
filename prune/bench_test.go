package prune

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/nn"
)

// randomLayerProblem makes a weight [rows × cols] and the Hessian of n
// random correlated activations, through the backend's SyrkTN as Build does.
func randomLayerProblem(b testing.TB, rows, cols, n int, seed uint64) ([]float32, []float64) {
	r := rand.New(rand.NewPCG(seed, 9))
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	// Activations with per-column scales and a shared low-rank part, so the
	// Hessian is not diagonal.
	x := make([]float32, n*cols)
	scale := make([]float32, cols)
	for c := range scale {
		scale[c] = float32(0.2 + r.Float64())
	}
	const rank = 16
	basis := make([]float32, rank*cols)
	for i := range basis {
		basis[i] = float32(r.NormFloat64() * 0.3)
	}
	for t := 0; t < n; t++ {
		row := x[t*cols : (t+1)*cols]
		for c := range row {
			row[c] = float32(r.NormFloat64()) * scale[c]
		}
		for k := 0; k < rank; k++ {
			z := float32(r.NormFloat64())
			for c := range row {
				row[c] += z * basis[k*cols+c]
			}
		}
	}
	dev := nn.DeviceFor(cpu(b))
	h, err := newHessian(dev, cols)
	if err != nil {
		b.Fatal(err)
	}
	xv, _ := dev.Resident(x)
	h.add(dev, xv, n, cols)
	if err := errors.Join(h.err, dev.Sync()); err != nil {
		b.Fatal(err)
	}
	return w, h.finish(2.0 / float64(n/512))
}

// cpuSeconds is the user+system CPU time of the process.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// peakRSS is the process's peak resident set (VmHWM) in bytes, or 0.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkDatabaseLayer builds the database entries (Hessians from 2048
// random activation rows, both greedy passes at --levels 10) of one decoder
// layer. The default shape is Llama-2-7B's (hidden 4096, 32 heads of 128,
// MLP 11008); PRUNE_BENCH_SCALE=k divides every width by k.
func BenchmarkDatabaseLayer(b *testing.B) {
	scale := 1
	if s, err := strconv.Atoi(os.Getenv("PRUNE_BENCH_SCALE")); err == nil && s > 0 {
		scale = s
	}
	hidden, heads, hd, inter, n := 4096/scale, 32, 128/scale, 11008/scale, 2048
	for i := 0; i < b.N; i++ {
		t0, c0 := time.Now(), cpuSeconds()
		wo, ho := randomLayerProblem(b, hidden, heads*hd, n, 1)
		sa, _ := LevelSchedule(heads, 10, 1)
		if _, err := GreedyOBS(wo, hidden, heads*hd, ho, OBSOptions{Group: hd, Schedule: sa, RelDamp: 1e-2}); err != nil {
			b.Fatal(err)
		}
		wo, ho = nil, nil
		tAttn := time.Since(t0)
		wd, hm := randomLayerProblem(b, hidden, inter, n, 2)
		sm, _ := LevelSchedule(inter, 10, DefaultNeuronMultiple(inter))
		if _, err := GreedyOBS(wd, hidden, inter, hm, OBSOptions{Group: 1, Schedule: sm, RelDamp: 1e-2}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(tAttn.Seconds(), "attn-s")
		b.ReportMetric(time.Since(t0).Seconds(), "layer-s")
		// CPU seconds of the process: on a shared machine the wall time
		// depends on the load, this much less.
		b.ReportMetric(cpuSeconds()-c0, "cpu-s")
	}
	runtime.GC()
	b.ReportMetric(float64(peakRSS())/(1<<30), "peak-GiB")
}

// BenchmarkStitchedForward compares the forward pass of a dense random
// model with the models stitched at uniform levels 0, 2 and 3 of 4 (about
// 50% and 25% of the layer parameters kept). tokens/s should grow about as
// the layer parameters shrink (the embedding and head are not pruned; the
// vocabulary is kept small so that the layers dominate).
func BenchmarkStitchedForward(b *testing.B) {
	m := modeltest.Random(modeltest.Cfg{Heads: 8, KV: 4, HD: 32, Hidden: 256, Inter: 768, Vocab: 256, Layers: 4}, false, 3)
	m.Cfg.MaxSeq = 256
	dir := b.TempDir() + "/db"
	calib := randomSeqs(5, 16, 128, m.Cfg.Vocab)
	if err := Build(context.Background(), cpu(b), m, calib, BuildOptions{Levels: 4}, dir); err != nil {
		b.Fatal(err)
	}
	db, err := OpenDatabase(dir)
	if err != nil {
		b.Fatal(err)
	}
	seqs := randomSeqs(6, 8, 256, m.Cfg.Vocab)
	layerParams := func(mm *model.Model) int64 {
		n := mm.NumParams() - int64(len(mm.Embed)+len(mm.Norm))
		if !mm.Cfg.Tied {
			n -= int64(len(mm.LMHead))
		}
		return n
	}
	for _, lv := range []int{0, 2, 3} {
		sm, err := db.Stitch(m, Uniform(db, lv))
		if err != nil {
			b.Fatal(err)
		}
		b.Run("level"+strconv.Itoa(lv), func(b *testing.B) {
			be := cpu(b)
			sm.Forward(be, seqs[:1])
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sm.Forward(be, seqs)
			}
			b.ReportMetric(float64(8*256*b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(layerParams(sm))/float64(layerParams(m)), "layer-params-frac")
		})
	}
}
