package shear

import (
	"context"
	"testing"

	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// BenchmarkPruneStep: one pruning step (sampled gates, masked forward and
// backward, Lagrangian, three AdamW updates) on a TinyStories-656K-shaped
// random model, batch 2 × 128 tokens.
func BenchmarkPruneStep(b *testing.B) {
	m := modeltest.Random(modeltest.Cfg{Heads: 8, KV: 4, HD: 16, Hidden: 128, Inter: 384, Vocab: 2048, Layers: 2, Tied: true}, false, 1)
	m.Cfg.MaxSeq = 512
	toks := make([]int, 64*128)
	for i := range toks {
		toks[i] = (i * 31) % 2048
	}
	cfg := Config{Model: m, Backend: cpuBackend(b), Target: Shape{Layers: 2, Hidden: 80, Heads: 5, KVHeads: 3, Inter: 240},
		Tokens: toks, SeqLen: 128, Batch: 2, Steps: b.N, LR: 1e-3, LagLR: 1, Clip: 1}
	b.ResetTimer()
	if _, _, err := Prune(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "tokens/s")
}
