package train

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// Cached teacher outputs. Distillation and the KL fitness compare a
// candidate with a fixed teacher (the dense model) on fixed sequences, so
// the teacher's logits are computed once and reused for every candidate
// and step: in full ([rows × vocab]) or, for the reference's sparse_kl, as
// the k largest logits per row with their indices (k·8 bytes per position
// instead of vocab·4).

// TopKLogits holds, for each of Rows positions, the K largest teacher
// logits, largest first (ties by lower index, as TopK), and their token
// indices.
type TopKLogits struct {
	Rows, K int
	Idx     []int32   // [Rows × K]
	Val     []float32 // [Rows × K]
}

// NewTopKLogits extracts the top-k of each row of logits [rows × vocab].
func NewTopKLogits(logits []float32, rows, vocab, k int) *TopKLogits {
	k = min(max(k, 1), vocab)
	t := &TopKLogits{Rows: rows, K: k, Idx: make([]int32, rows*k), Val: make([]float32, rows*k)}
	nn.ParallelFor(rows, func(r int) {
		z := logits[r*vocab : (r+1)*vocab]
		for i, v := range TopK(z, k) {
			t.Idx[r*k+i], t.Val[r*k+i] = int32(v), z[v]
		}
	})
	return t
}

// Slice returns the rows [r0, r1) (sharing storage), e.g. a sequence of a
// packed batch or a truncated one.
func (t *TopKLogits) Slice(r0, r1 int) *TopKLogits {
	return &TopKLogits{Rows: r1 - r0, K: t.K, Idx: t.Idx[r0*t.K : r1*t.K], Val: t.Val[r0*t.K : r1*t.K]}
}

// TeacherLogits is the cached teacher output for one sequence: Full
// [len × vocab] logits, or TopK (then Full is nil).
type TeacherLogits struct {
	Full []float32
	TopK *TopKLogits
}

// CacheTeacher runs teacher once on each sequence and keeps its logits: in
// full when k ≤ 0, else the top-k per position.
func CacheTeacher(be backend.Backend, teacher *model.Model, seqs [][]int, k int) []TeacherLogits {
	out := make([]TeacherLogits, len(seqs))
	V := teacher.Cfg.Vocab
	for i, s := range seqs {
		z := teacher.Forward(be, [][]int{s})
		if k > 0 {
			out[i].TopK = NewTopKLogits(z, len(s), V, k)
		} else {
			out[i].Full = z
		}
	}
	return out
}

// SparseKLCached is SparseKL with the teacher's top-k given (t has one row
// per logits row): at each predicting position the student's logits are
// gathered at the teacher's top-k indices S, both sides are renormalised
// with a log-softmax over S, and KL(p̃_teacher ‖ q̃_student) is summed over
// S; positions are averaged. The gradient q̃ − p̃ (times weight / positions)
// is accumulated into dlogits on S.
func SparseKLCached[F nn.Float](dlogits, logits []F, t *TopKLogits, seqs [][]int, vocab int, weight float64) float64 {
	tg := rowTargets(seqs)
	if nn.CountTargets(tg) == 0 {
		return 0
	}
	if t.Rows != len(tg) {
		panic(fmt.Sprintf("SparseKLCached: %d teacher rows for %d logits rows", t.Rows, len(tg)))
	}
	return nn.SparseKLTargets(dlogits, logits, t.Idx, t.Val, t.K, tg, vocab, weight)
}
