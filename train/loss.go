package train

import (
	"sort"

	"github.com/darwinlm/darwinlm-go/nn"
)

// Losses. Every loss is a mean over the predicting positions of the batch:
// position t of a sequence of length T predicts token t+1, so each sequence
// contributes its first T−1 positions (its last position has no target and
// gets a zero gradient; the KL losses also drop it, like the reference
// compute_kl_div). Each loss accumulates weight·∂loss/∂logits into dlogits
// and returns the (unweighted) mean loss in float64. Per-row work runs in
// parallel, the row losses are summed in row order (deterministic).

// Positions returns the number of predicting positions of seqs.
func Positions(seqs [][]int) int {
	n := 0
	for _, s := range seqs {
		n += max(len(s)-1, 0)
	}
	return n
}

// RowTargets lists, for each logits row of packed seqs, its next-token
// target or −1 (the targets of the Device losses).
func RowTargets(seqs [][]int) []int { return rowTargets(seqs) }

// rowTargets lists, for each logits row, its target token or −1.
func rowTargets(seqs [][]int) []int {
	var t []int
	for _, s := range seqs {
		for i := range s {
			if i+1 < len(s) {
				t = append(t, s[i+1])
			} else {
				t = append(t, -1)
			}
		}
	}
	return t
}

// CrossEntropy is the next-token cross-entropy (Hugging Face causal-LM loss
// with labels = input ids: mean over the shifted positions). dlogits may be
// nil (loss only) and may alias logits.
func CrossEntropy[F nn.Float](dlogits, logits []F, seqs [][]int, vocab int, weight float64) float64 {
	return nn.CrossEntropyTargets(dlogits, logits, rowTargets(seqs), vocab, weight)
}

// KL is the mean over predicting positions of KL(p_teacher ‖ p_student) over
// the full vocabulary, p = softmax of the logits (the `kl` fitness of the
// reference, src/metrics.py::compute_kl_div). Its gradient with respect to
// the student logits is softmax(student) − softmax(teacher).
func KL[F nn.Float](dlogits, logits []F, teacher []float32, seqs [][]int, vocab int, weight float64) float64 {
	return nn.KLTargets(dlogits, logits, teacher, rowTargets(seqs), vocab, weight)
}

// SparseKL is the reference's `sparse_kl` (src/metrics.py::
// compute_sparse_kl_div, --kl_topk): at each position the k largest teacher
// logits are kept with their indices S (torch.topk; ties here go to the lower
// index), the student logits are gathered at S, both are renormalised with a
// log-softmax over the k entries only, and KL(p̃_teacher ‖ q̃_student) is
// summed over S; positions are averaged (reduction "batchmean"). The
// gradient is q̃ − p̃ on S and zero elsewhere.
func SparseKL[F nn.Float](dlogits, logits []F, teacher []float32, seqs [][]int, vocab, k int, weight float64) float64 {
	tg := rowTargets(seqs)
	n := Positions(seqs)
	if n == 0 {
		return 0
	}
	rows := len(tg)
	return SparseKLCached(dlogits, logits, NewTopKLogits(teacher[:rows*vocab], rows, vocab, k), seqs, vocab, weight)
}

// TopK returns the indices of the k largest values of z, largest first (ties
// by lower index).
func TopK(z []float32, k int) []int {
	k = min(k, len(z))
	idx := make([]int, 0, k)
	for i, v := range z {
		if len(idx) == k && v <= z[idx[k-1]] {
			continue
		}
		// Insert after every element ≥ v (stable: earlier index wins ties).
		p := sort.Search(len(idx), func(j int) bool { return z[idx[j]] < v })
		if len(idx) < k {
			idx = append(idx, 0)
		}
		copy(idx[p+1:], idx[p:len(idx)-1])
		idx[p] = i
	}
	return idx
}
