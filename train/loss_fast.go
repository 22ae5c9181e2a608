package train

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// crossEntropyInto is CrossEntropy for float32 logits, fast
// (nn.CrossEntropyFast): it overwrites dlogits (rows without a target are
// zeroed) instead of accumulating. workers bounds the goroutines (1: the
// calling one only).
func crossEntropyInto(be backend.Backend, workers int, dlogits, logits []float32, seqs [][]int, vocab int, weight float64) float64 {
	return nn.CrossEntropyFast(be, workers, dlogits, logits, rowTargets(seqs), vocab, weight)
}
