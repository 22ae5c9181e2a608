package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

func randVec(n int) []float32 {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// report adds GFLOP/s (wall clock, the figure to quote) and GFLOP/s-core:
// the rate per CPU-second the process used, which stays meaningful when other
// processes share the two cores (multiply by the workers for the uncontended
// estimate). Call start() right before the timed loop.
func report(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := processCPU() - cpu0; cpu > 0 && cpu0 > 0 {
		b.ReportMetric(flops*float64(b.N)/cpu/1e9, "GFLOP/s-core")
	}
	cpu0 = 0
}

var cpu0 float64

func start(b *testing.B) {
	b.ResetTimer()
	cpu0 = processCPU()
}

func variant(b *testing.B, name string) *cpu.CPU {
	c, err := cpu.NewVariant(name)
	if err != nil {
		b.Skip(err)
	}
	return c
}

type shape struct {
	op      string // NT, NN, TN
	m, n, k int
}

func (s shape) String() string { return fmt.Sprintf("%s_%dx%dx%d", s.op, s.m, s.n, s.k) }

func benchShape(b *testing.B, c *cpu.CPU, s shape) {
	a, bb := randVec(s.m*s.k), randVec(s.k*s.n)
	cc := make([]float32, s.m*s.n)
	f := c.MatMulNT
	switch s.op {
	case "NN":
		f = c.MatMulNN
	case "TN":
		f = c.MatMulTN
	}
	f(cc, a, bb, s.m, s.n, s.k, false) // warm the pool and buffers
	start(b)
	for b.Loop() {
		f(cc, a, bb, s.m, s.n, s.k, false)
	}
	report(b, 2*float64(s.m)*float64(s.n)*float64(s.k))
}

// BenchmarkGemm1024 is the acceptance benchmark: every variant at 1024³
// against gonum's Sgemm in the same run.
func BenchmarkGemm1024(b *testing.B) {
	const n = 1024
	for _, v := range cpu.Available() {
		for _, op := range []string{"NT", "NN", "TN"} {
			if v == "purego" && op != "NN" {
				continue // slow; one shape is enough
			}
			b.Run(v+"/"+op, func(b *testing.B) { benchShape(b, variant(b, v), shape{op, n, n, n}) })
		}
	}
	b.Run("gonum/NN", func(b *testing.B) {
		a, bb, cc := randVec(n*n), randVec(n*n), make([]float32, n*n)
		start(b)
		for b.Loop() {
			gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, a, n, bb, n, 0, cc, n)
		}
		report(b, 2*n*n*n)
	})
}

// Linear layers as m tokens × n outputs × k inputs: the tiny checkpoints
// (stories260K: d=64, MLP 172, vocab 512; 8 windows of 256 tokens), a small
// model (d=384, MLP 1536, 128 tokens) and Llama-7B (d=4096, MLP 11008, 512
// tokens).
var modelShapes = []shape{
	{"NT", 2048, 64, 64}, {"NT", 2048, 172, 64}, {"NT", 2048, 64, 172}, {"NT", 2048, 512, 64},
	{"NN", 2048, 64, 172}, {"TN", 172, 64, 2048},
	{"NT", 256, 256, 8}, {"NN", 256, 8, 256}, {"NT", 64, 64, 64}, // attention per head
	{"NT", 128, 384, 384}, {"NT", 128, 1536, 384}, {"NT", 128, 384, 1536},
	{"NN", 128, 384, 384}, {"TN", 384, 384, 128},
	{"NT", 512, 4096, 4096}, {"NT", 512, 11008, 4096}, {"NT", 512, 4096, 11008},
	{"NN", 512, 4096, 4096}, {"TN", 4096, 4096, 512},
}

func BenchmarkGemmModel(b *testing.B) {
	for _, v := range cpu.Available() {
		if v == "purego" {
			continue
		}
		for _, s := range modelShapes {
			b.Run(v+"/"+s.String(), func(b *testing.B) { benchShape(b, variant(b, v), s) })
		}
	}
}

// BenchmarkGemv is token-by-token decoding (m = 1).
func BenchmarkGemv(b *testing.B) {
	for _, v := range cpu.Available() {
		for _, s := range []shape{{"NT", 1, 384, 384}, {"NT", 1, 4096, 4096}, {"NT", 4, 4096, 4096}, {"NN", 1, 4096, 4096}} {
			b.Run(v+"/"+s.String(), func(b *testing.B) { benchShape(b, variant(b, v), s) })
		}
	}
}

// BenchmarkSyrk reports GFLOP/s of the full product (2·n²·k), so the symmetry
// saving shows up as a figure above the GEMM one.
func BenchmarkSyrk(b *testing.B) {
	for _, v := range cpu.Available() {
		if v == "purego" {
			continue
		}
		for _, d := range [][2]int{{384, 128}, {1536, 512}, {4096, 512}} {
			n, k := d[0], d[1]
			b.Run(fmt.Sprintf("%s/%dx%d", v, n, k), func(b *testing.B) {
				c := variant(b, v)
				x, h := randVec(k*n), make([]float32, n*n)
				c.SyrkTN(h, x, n, k)
				start(b)
				for b.Loop() {
					c.SyrkTN(h, x, n, k)
				}
				report(b, 2*float64(n)*float64(n)*float64(k))
			})
		}
	}
}

func BenchmarkBF16(b *testing.B) {
	for _, v := range cpu.Available() {
		if v == "purego" {
			continue
		}
		for _, s := range []shape{{"NT", 1, 4096, 4096}, {"NT", 128, 1536, 384}, {"NT", 512, 4096, 4096}} {
			b.Run(v+"/"+s.String(), func(b *testing.B) {
				c := variant(b, v)
				a := randVec(s.m * s.k)
				w := make([]uint16, s.n*s.k)
				for i, f := range randVec(s.n * s.k) {
					w[i] = uint16(math.Float32bits(f) >> 16)
				}
				cc := make([]float32, s.m*s.n)
				c.MatMulNTBF16(cc, a, w, s.m, s.n, s.k, false)
				start(b)
				for b.Loop() {
					c.MatMulNTBF16(cc, a, w, s.m, s.n, s.k, false)
				}
				report(b, 2*float64(s.m)*float64(s.n)*float64(s.k))
			})
		}
	}
}

// BenchmarkRows covers the exported row kernels at n = 4096 (in L1).
func BenchmarkRows(b *testing.B) {
	const n = 4096
	x, y := randVec(n), randVec(n)
	var sink float32
	b.Run("Dot", func(b *testing.B) {
		for b.Loop() {
			sink += cpu.Dot(x, y)
		}
		report(b, 2*n)
	})
	b.Run("Axpy", func(b *testing.B) {
		for b.Loop() {
			cpu.Axpy(1e-9, x, y)
		}
		report(b, 2*n)
	})
	out := make([]float32, n)
	b.Run("RMSNorm", func(b *testing.B) {
		for b.Loop() {
			cpu.RMSNorm(out, x, y, 1e-5)
		}
		report(b, 4*n)
	})
	b.Run("SiLUMul", func(b *testing.B) {
		for b.Loop() {
			cpu.SiLUMul(out, x, y)
		}
	})
	_ = sink
}

// fineTuneShapes are the products of one FineTune step on TinyStories-656K
// (T = 128, hidden 128, 8 heads of 16 over 4 K/V heads, MLP 384, vocab 2048,
// 2 layers) with how often each runs per step: the GEMM share of
// BenchmarkFineTune, shape by shape.
var fineTuneShapes = []struct {
	shape
	count int
}{
	{shape{"NT", 128, 128, 128}, 4}, {shape{"NT", 128, 64, 128}, 4}, {shape{"NT", 128, 384, 128}, 4},
	{shape{"NT", 128, 128, 384}, 2}, {shape{"NT", 128, 2048, 128}, 1},
	{shape{"NT", 256, 128, 16}, 24}, {shape{"NN", 256, 16, 128}, 16}, {shape{"TN", 128, 16, 256}, 16},
	{shape{"TN", 2048, 128, 128}, 1}, {shape{"NN", 128, 128, 2048}, 1},
	{shape{"TN", 128, 384, 128}, 2}, {shape{"NN", 128, 384, 128}, 2}, {shape{"TN", 384, 128, 128}, 4},
	{shape{"NN", 128, 128, 384}, 4}, {shape{"TN", 128, 128, 128}, 4}, {shape{"NN", 128, 128, 128}, 4},
	{shape{"TN", 64, 128, 128}, 4}, {shape{"NN", 128, 128, 64}, 4},
}

// BenchmarkGemmFineTune runs every product of one FineTune step on one
// worker; µs/step is the shape's time per training step (time × count).
//
//	go test -run '^$' -bench GemmFineTune ./bench/
func BenchmarkGemmFineTune(b *testing.B) {
	c := cpu.New().WithWorkers(1)
	for _, s := range fineTuneShapes {
		b.Run(s.String(), func(b *testing.B) {
			benchShape(b, c, s.shape)
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)*float64(s.count), "µs/step")
		})
	}
}
