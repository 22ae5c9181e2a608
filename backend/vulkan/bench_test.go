//go:build vulkan && cgo

package vulkan

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// Benchmarks (bench/gpu.sh runs them on a GPU; lavapipe figures say nothing
// about GPU speed). DARWINLM_VK_BENCH_SIZES lists the square GEMM sizes
// (default 256,512: lavapipe-sized). Validation is off here.
//
//	go test -tags vulkan -run x -bench Vulkan -benchtime 3x ./backend/vulkan/

func benchDevice(b *testing.B) *Device {
	b.Helper()
	d, err := Open(Options{Device: testDevice()})
	if err != nil {
		b.Skipf("no usable Vulkan device: %v", err)
	}
	b.Cleanup(d.Close)
	return d
}

func benchSizes() []int {
	s := os.Getenv("DARWINLM_VK_BENCH_SIZES")
	if s == "" {
		s = "256,512"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// BenchmarkVulkanGemm: device-resident GEMM (operands stay on the device,
// 1 submit per iteration) against the CPU backend on the same machine.
func BenchmarkVulkanGemm(b *testing.B) {
	d := benchDevice(b)
	c := cpu.New()
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range benchSizes() {
		a, w := randVec(r, n*n), randVec(r, n*n)
		ba, _ := d.Alloc(F32, n*n)
		bw, _ := d.Alloc(F32, n*n)
		bc, err := d.Alloc(F32, n*n)
		if err != nil {
			b.Fatal(err)
		}
		ba.Upload(0, a)
		bw.Upload(0, w)
		flop := 2 * float64(n) * float64(n) * float64(n)
		for _, op := range []struct {
			name   string
			tA, tB bool
		}{{"NT", false, true}, {"NN", false, false}, {"TN", true, false}} {
			b.Run(fmt.Sprintf("%s/%s/%d", d.Name(), op.name, n), func(b *testing.B) {
				// warm-up outside the timing: pipeline creation compiles
				// the shader (a large share of one iteration on lavapipe)
				if err := d.Gemm(op.tA, op.tB, bc.All(), ba.All(), bw.All(), n, n, n, false); err != nil {
					b.Fatal(err)
				}
				d.Flush()
				for b.Loop() {
					if err := d.Gemm(op.tA, op.tB, bc.All(), ba.All(), bw.All(), n, n, n, false); err != nil {
						b.Fatal(err)
					}
					if err := d.Flush(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		cc := make([]float32, n*n)
		b.Run(fmt.Sprintf("cpu-backend/NT/%d", n), func(b *testing.B) {
			for b.Loop() {
				c.MatMulNT(cc, a, w, n, n, n, false)
			}
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		vk := &Backend{d: d}
		b.Run(fmt.Sprintf("%s/host-slices/NT/%d", d.Name(), n), func(b *testing.B) {
			for b.Loop() {
				vk.MatMulNT(cc, a, w, n, n, n, false)
			}
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		for _, s := range vk.sc {
			s.Free()
		}
		ba.Free()
		bw.Free()
		bc.Free()
	}
}

func pseudoSeqs(n, T, vocab int) [][]int {
	s := make([][]int, n)
	for i := range s {
		s[i] = make([]int, T)
		for j := range s[i] {
			s[i][j] = (i*131 + j*17) % vocab
		}
	}
	return s
}

var tinyModels = []struct{ name, spec string }{
	{"TinyStories-656K", "hf:raincandy-u/TinyStories-656K"},
	{"stories260K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"},
}

// BenchmarkVulkanForward: forward tokens/s of the tiny models with the
// weights resident on the device (model.ResidentOf.Forward: activations on
// the device, logits downloaded), the CPU host device alongside.
func BenchmarkVulkanForward(b *testing.B) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		b.Skip("DARWINLM_HUB_MIRROR not set")
	}
	d := benchDevice(b)
	for _, tm := range tinyModels {
		m := openModel(b, tm.spec)
		seqs := pseudoSeqs(8, 256, m.Cfg.Vocab)
		for _, dev := range []backend.Device[float32]{d.F32(), nn.NewHost[float32](cpu.New())} {
			r, err := m.Upload(dev)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(tm.name+"/"+dev.Name(), func(b *testing.B) {
				if _, err := r.Forward(seqs[:1]); err != nil { // warm-up: pipelines
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := r.Forward(seqs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*8*256)/b.Elapsed().Seconds(), "tokens/s")
			})
			r.Release()
		}
	}
}

// BenchmarkVulkanFineTune: fine-tuning tokens/s (one AdamW step per
// sequence of 256 tokens: forward, loss, backward and the update all on the
// device, weights resident) of the tiny models, the CPU alongside.
func BenchmarkVulkanFineTune(b *testing.B) {
	eachTinyModel(b, func(name string, be backend.Backend, m *model.Model) {
		f := train.NewFineTuner(be, train.Options{Optimizer: "adamw", LR: 1e-5, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
		r, err := m.Upload(f.Device())
		if err != nil {
			b.Fatal(err)
		}
		seqs := pseudoSeqs(4, 256, m.Cfg.Vocab)
		b.Run(name+"/"+f.Device().Name(), func(b *testing.B) {
			if _, err := f.TrainResident(r, [][]int{seqs[0][:16]}); err != nil { // warm-up: pipelines
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := f.TrainResident(r, seqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*4*256)/b.Elapsed().Seconds(), "tokens/s")
		})
		r.Release()
	})
}

// eachTinyModel calls f with each tiny model freshly opened for each
// backend (Vulkan on one bench device, then the CPU); it skips without
// the hub mirror.
func eachTinyModel(b *testing.B, f func(name string, be backend.Backend, m *model.Model)) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		b.Skip("DARWINLM_HUB_MIRROR not set")
	}
	d := benchDevice(b)
	for _, tm := range tinyModels {
		for _, be := range []backend.Backend{&Backend{d: d}, cpu.New()} {
			m := openModel(b, tm.spec)
			f(tm.name, be, m)
		}
	}
}

// BenchmarkVulkanTrain: training tokens/s (forward, loss, backward, AdamW)
// of the tiny models, batch 8 × 256, with train.Trainer (every step on the
// device, weights, gradients and moments resident; only the loss and the
// gradient norm come back).
func BenchmarkVulkanTrain(b *testing.B) {
	eachTinyModel(b, func(name string, be backend.Backend, m *model.Model) {
		b.Run(name+"/"+be.Name(), func(b *testing.B) {
			tr, err := train.NewTrainer(be, m, nil, train.Options{Optimizer: "adamw", LR: 1e-5, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Steps: b.N})
			if err != nil {
				b.Fatal(err)
			}
			seqs := pseudoSeqs(8, 256, m.Cfg.Vocab)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := tr.TrainStep(seqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*8*256)/b.Elapsed().Seconds(), "tokens/s")
		})
	})
}

// BenchmarkVulkanAttention: the device attention forward and backward
// (tokens/s) on a packed batch: Llama-like heads (32 query, 8 K/V, dim 128)
// and 4 × 1024 tokens on a GPU, the tiny models' shape (8, 4, 8) and 8 ×
// 256 on a CPU implementation.
func BenchmarkVulkanAttention(b *testing.B) {
	d := benchDevice(b)
	x := d.F32()
	h, nseq, T := backend.Heads{NH: 32, NKV: 8, D: 128}, 4, 1024
	if d.Type() == "CPU" {
		h, nseq, T = backend.Heads{NH: 8, NKV: 4, D: 8}, 8, 256
	}
	rows := nseq * T
	r := rand.New(rand.NewPCG(1, 1))
	mk := func(n int) backend.View {
		v, err := x.Resident(randVec(r, n))
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	q, k, v, do := mk(rows*h.NH*h.D), mk(rows*h.NKV*h.D), mk(rows*h.NKV*h.D), mk(rows*h.NH*h.D)
	out, dq, dk, dv := mk(rows*h.NH*h.D), mk(rows*h.NH*h.D), mk(rows*h.NKV*h.D), mk(rows*h.NKV*h.D)
	var seqs []backend.AttnSeq
	for i := 0; i < nseq; i++ {
		seqs = append(seqs, backend.AttnSeq{Seq: backend.Seq{Row: i * T, T: T}})
	}
	name := fmt.Sprintf("%s/heads%d-%d-%d/%dx%d", d.Name(), h.NH, h.NKV, h.D, nseq, T)
	run := func(b *testing.B, f func()) {
		f() // warm-up: pipelines
		if err := x.Sync(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			f()
			if err := x.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "tokens/s")
	}
	b.Run(name+"/forward", func(b *testing.B) { run(b, func() { x.Attention(out, q, k, v, seqs, h) }) })
	b.Run(name+"/backward", func(b *testing.B) {
		run(b, func() { x.AttentionBackward(dq, dk, dv, do, q, k, v, seqs, h) })
	})
}
