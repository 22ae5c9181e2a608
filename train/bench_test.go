package train

import (
	"testing"
)

// BenchmarkTrainStepTinyShape: a TinyStories-656K-shaped random model,
// batch 8 × 256 tokens, one AdamW step.
func BenchmarkTrainStepTinyShape(b *testing.B) {
	m := randomModel(randCfg{Heads: 8, KV: 4, HD: 16, Hidden: 128, Inter: 384, Vocab: 2048, Layers: 2, Tied: true}, false, 1)
	tr, err := NewTrainer(cpu(b), m, nil, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	seqs := make([][]int, 8)
	for i := range seqs {
		seqs[i] = make([]int, 256)
		for j := range seqs[i] {
			seqs[i][j] = (i*7919 + j*104729) % 2048
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.TrainStep(seqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(8*256*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
