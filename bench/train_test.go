package bench

import (
	"os"
	"strconv"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// BenchmarkTrain reports training throughput (tokens/s: forward, loss,
// backward and one AdamW step) of the two tiny checkpoints, batch 8 × 256
// tokens (stories260K: 8 × 256 as well, its context is 512).
//
//	go test -run x -bench Train -benchtime 3x ./bench/
func BenchmarkTrain(b *testing.B) {
	models := tinyModels(b)
	be := defaultBackend(b)
	for _, tm := range models {
		m := tm.m
		b.Run(tm.name, func(b *testing.B) {
			tr, err := train.NewTrainer(be, m, nil, train.Options{Optimizer: "adamw", LR: 1e-5, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Steps: b.N})
			if err != nil {
				b.Fatal(err)
			}
			seqs := pseudoSeqs(8, 256, m.Cfg.Vocab)
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				if _, err := tr.TrainStep(seqs); err != nil {
					b.Fatal(err)
				}
			}
			reportTokens(b, 8*256, cpu0)
		})
	}
}

// BenchmarkTrainLayer7B: one Llama-2-7B-shaped decoder layer (hidden 4096,
// 32 heads of 128, MLP 11008, random weights) forward + backward on one
// sequence of 512 tokens, attention probabilities recomputed in the backward
// pass (the memory-bounded mode used for long sequences).
// DARWINLM_BENCH_LAYER_TOKENS overrides the 512 tokens.
//
//	go test -run x -bench TrainLayer7B -benchtime 1x ./bench/
func BenchmarkTrainLayer7B(b *testing.B) {
	be := defaultBackend(b)
	const H, nH, d, I = 4096, 32, 128, 11008
	T := 512
	if v, err := strconv.Atoi(os.Getenv("DARWINLM_BENCH_LAYER_TOKENS")); err == nil && v > 0 {
		T = v // e.g. 2048 for the memory check: /usr/bin/time -v go test …
	}
	l := &train.LayerW[float32]{Heads: nH, KVHeads: nH, Inter: I,
		AttnNorm: fill(H, 1, 1), MLPNorm: fill(H, 1, 2),
		Wq: fill(H*H, 0.02, 3), Wk: fill(H*H, 0.02, 4), Wv: fill(H*H, 0.02, 5), Wo: fill(H*H, 0.02, 6),
		Wgate: fill(I*H, 0.02, 7), Wup: fill(I*H, 0.02, 8), Wdown: fill(H*I, 0.02, 9)}
	w := &train.Weights[float32]{Layers: []train.LayerW[float32]{*l}}
	g := train.ZeroLike(w)
	rope := nn.NewRope(d, 10000, false, nil)
	rope.Ensure(T)
	x0 := fill(T*H, 1, 10)
	dy := fill(T*H, 1e-3, 11)
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		x := append([]float32(nil), x0...)
		var a train.LayerActs[float32]
		train.LayerForward(be, rope, d, 1e-5, l, x, []int{T}, &a, false)
		dx := append([]float32(nil), dy...)
		train.LayerBackward(be, rope, d, l, &g.Layers[0], dx, []int{T}, &a)
	}
	reportTokens(b, T, cpu0)
	// 6 FLOPs per parameter per token for the matrix products, plus QKᵀ and
	// PV: 2·2·T²/2·H forward, twice that backward, and one more QKᵀ for the
	// recomputation.
	params := float64(4*H*H + 3*H*I)
	flops := 6*params*float64(T) + (2+4+1)*float64(T)*float64(T)*H
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func reportTokens(b *testing.B, perIter int, cpu0 float64) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(perIter*b.N)/s, "tokens/s")
	if c := processCPU() - cpu0; c > 0 {
		b.ReportMetric(c/s, "cpu-util")
		// Per CPU-second of this process: comparable across runs when other
		// processes take a varying share of the cores.
		b.ReportMetric(float64(perIter*b.N)/c, "tokens/cpu-s")
	}
}

func pseudoSeqs(n, T, vocab int) [][]int {
	out := make([][]int, n)
	for i := range out {
		out[i] = make([]int, T)
		for j := range out[i] {
			out[i][j] = (i*7919 + j*104729 + j*j*31) % vocab
		}
	}
	return out
}

// fill returns n pseudo-random values of scale s (a fast LCG; the values only
// need to be reproducible and of a sensible size).
func fill(n int, s float32, seed uint64) []float32 {
	out := make([]float32, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range out {
		x = x*6364136223846793005 + 1442695040888963407
		u := float32(x>>40)/float32(1<<24) - 0.5
		out[i] = s * u * 3.4641016 // unit variance × s
	}
	if s == 1 && seed <= 2 { // norm weights: around 1
		for i := range out {
			out[i] = 1 + 0.1*out[i]
		}
	}
	return out
}

// BenchmarkFineTune is the training-aware selection's inner loop: the
// SelectionPreset FineTuner (AdamW, batch = one sequence of 128 tokens, one
// step per sequence) on TinyStories-656K, reporting tokens/s. Compare with
// PyTorch eager on the same machine in the same minute:
//
//	go test -run x -bench FineTune -benchtime 300x ./bench/
//	/usr/bin/python3 bench/torch_finetune.py --model $DARWINLM_HUB_MIRROR/models/raincandy-u/TinyStories-656K
//
// "Serial1Worker" is the same on a single-worker backend; "Pairs"
// fine-tunes two candidates at once, one per core (train.Pool), and counts
// the tokens of both.
func BenchmarkFineTune(b *testing.B) {
	if hub.Mirror() == "" {
		b.Skip("DARWINLM_HUB_MIRROR not set")
	}
	be := defaultBackend(b)
	const T, perCall = 128, 16
	m, _, err := model.Open("hf:raincandy-u/TinyStories-656K", "")
	if err != nil {
		b.Fatal(err)
	}
	seqs := make([][]int, perCall)
	for i := range seqs {
		seqs[i] = pseudoSeqs(i+1, T, m.Cfg.Vocab)[i]
	}
	// serial times b.N single-sequence steps of ft, cycling through seqs.
	serial := func(b *testing.B, ft *train.FineTuner) {
		b.ResetTimer()
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			if _, err := ft.Train(m, seqs[i%perCall:i%perCall+1]); err != nil {
				b.Fatal(err)
			}
		}
		reportTokens(b, T, cpu0)
	}
	b.Run("Serial", func(b *testing.B) {
		ft := train.NewFineTuner(be, train.SelectionPreset())
		st, err := ft.Train(m, seqs[:1])
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("first loss %.6f", st.FirstLoss)
		serial(b, ft)
	})
	b.Run("Serial1Worker", func(b *testing.B) {
		serial(b, train.NewFineTuner(cpu.New().WithWorkers(1), train.SelectionPreset()))
	})
	b.Run("Pairs", func(b *testing.B) {
		// Two candidates at once (train.Pool: one FineTuner and one
		// single-worker backend per core), 16 steps each per call as in a
		// selection stage; b.N counts pairs of steps.
		ms := make([]*model.Model, 2)
		for k := range ms {
			if ms[k], _, err = model.Open("hf:raincandy-u/TinyStories-656K", ""); err != nil {
				b.Fatal(err)
			}
		}
		pool := train.NewPool(be, train.SelectionPreset(), 2)
		b.ResetTimer()
		cpu0 := processCPU()
		for i := 0; i < b.N; i += perCall {
			_, errs := pool.Train(ms, seqs[:min(perCall, b.N-i)])
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		reportTokens(b, 2*T, cpu0)
	})
}
