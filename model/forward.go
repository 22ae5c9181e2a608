package model

import "github.com/darwinlm/darwinlm-go/backend"

// Forward runs the model on a batch of token sequences. Sequences may have
// different lengths; each starts at position 0 and attends causally to
// itself only. It returns logits [Σlen(seqs) × Vocab], rows in sequence order.
func (m *Model) Forward(be backend.Backend, seqs [][]int) []float32 {
	panic("not implemented yet")
}
