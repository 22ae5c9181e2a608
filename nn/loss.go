package nn

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
)

// Losses over rows of logits [rows × vocab] with one target per row
// (targets[r] < 0: the row predicts nothing). Each is the mean over the rows
// with a target; per-row work runs in parallel and the row losses are summed
// in row order, so the result does not depend on the worker count. With
// dlogits (may be nil) weight·∂loss/∂logits is accumulated into it, except
// by CrossEntropyFast, which overwrites it. These are the kernels of train's
// losses (which map sequences to targets) and of the host device.

// CountTargets is the number of rows with a target (the losses' divisor).
func CountTargets(targets []int) int {
	n := 0
	for _, t := range targets {
		if t >= 0 {
			n++
		}
	}
	return n
}

// CrossEntropyTargets is the next-token cross-entropy in float64 (exact
// log-sum-exp), accumulating into dlogits. dlogits may alias logits.
func CrossEntropyTargets[F Float](dlogits, logits []F, tg []int, vocab int, weight float64) float64 {
	return targetMean(tg, weight, func(r int, scale float64) float64 {
		z := logits[r*vocab : (r+1)*vocab]
		lse := LogSumExp(z)
		loss := lse - float64(z[tg[r]]) // before dz, which may alias z
		if dlogits != nil {
			dz := dlogits[r*vocab : (r+1)*vocab]
			for v := range z {
				p := math.Exp(float64(z[v]) - lse)
				if v == tg[r] {
					p--
				}
				dz[v] += F(p * scale)
			}
		}
		return loss
	})
}

// targetMean calls loss(r, scale) for every row r with a target, in
// parallel, and returns the mean of the row losses, summed in row order;
// scale = weight / (rows with a target) is the factor of each row's
// gradient. No rows with a target: 0, and loss is not called.
func targetMean(tg []int, weight float64, loss func(r int, scale float64) float64) float64 {
	n := CountTargets(tg)
	if n == 0 {
		return 0
	}
	row := make([]float64, len(tg))
	scale := weight / float64(n)
	ParallelFor(len(tg), func(r int) {
		if tg[r] >= 0 {
			row[r] = loss(r, scale)
		}
	})
	return SumRows(row) / float64(n)
}

// CrossEntropyFast is CrossEntropyTargets for float32 logits, fast: each
// row's softmax is computed by the backend's vectorised row kernel (float32
// exps, see backend.RowKernels) straight into dlogits, which it overwrites
// (rows without a target are zeroed) instead of accumulating. Precision: the
// loss is −log p_t from the float32 softmax (≈1e-7 relative); where p_t >
// 1/2, 1 − p_t is summed from the other probabilities instead (no
// cancellation), and where p_t underflows the row falls back to the exact
// float64 log-sum-exp. workers bounds the goroutines (1: the calling one
// only). dlogits must not alias logits.
func CrossEntropyFast(be backend.Backend, workers int, dlogits, logits []float32, tg []int, vocab int, weight float64) float64 {
	n := CountTargets(tg)
	if n == 0 {
		clear(dlogits[:len(tg)*vocab])
		return 0
	}
	rk, _ := be.(backend.RowKernels)
	row := make([]float64, len(tg))
	scale := weight / float64(n)
	s32 := float32(scale)
	ParFor(workers, len(tg), func(r int) {
		dz := dlogits[r*vocab : (r+1)*vocab]
		t := tg[r]
		if t < 0 {
			clear(dz)
			return
		}
		z := logits[r*vocab : (r+1)*vocab]
		copy(dz, z)
		softmaxCausalRow(rk, dz, vocab-1, 1) // softmax of the whole row
		p := dz[t]
		var oneMinus float64 // 1 − p_t
		if p > 0.5 {
			for v, q := range dz {
				if v != t {
					oneMinus += float64(q)
				}
			}
			row[r] = -math.Log1p(-oneMinus)
		} else {
			oneMinus = 1 - float64(p)
			if p >= 0x1p-100 {
				row[r] = -math.Log(float64(p))
			} else {
				row[r] = LogSumExp(z) - float64(z[t])
			}
		}
		for v := range dz {
			dz[v] *= s32
		}
		dz[t] = float32(-oneMinus * scale)
	})
	return SumRows(row) / float64(n)
}

// KLTargets is the mean over rows with a target of KL(p_teacher ‖
// p_student) over the full vocabulary, p = softmax of the logits. Its
// gradient with respect to the student logits is softmax(student) −
// softmax(teacher).
func KLTargets[F, T Float](dlogits, logits []F, teacher []T, tg []int, vocab int, weight float64) float64 {
	return targetMean(tg, weight, func(r int, scale float64) float64 {
		z := logits[r*vocab : (r+1)*vocab]
		zt := teacher[r*vocab : (r+1)*vocab]
		lse, lseT := LogSumExp(z), LogSumExp(zt)
		var kl float64
		for v := range z {
			lp := float64(zt[v]) - lseT
			lq := float64(z[v]) - lse
			p := math.Exp(lp)
			kl += p * (lp - lq)
			if dlogits != nil {
				dlogits[r*vocab+v] += F((math.Exp(lq) - p) * scale)
			}
		}
		return kl
	})
}

// SparseKLTargets is KL over each row's k cached teacher entries (idx/val
// [rows × k], the teacher's top-k): the student's logits are gathered at
// idx, both sides are renormalised with a log-softmax over those k entries,
// and KL(p̃_teacher ‖ q̃_student) is summed over them; rows are averaged. The
// gradient q̃ − p̃ (times weight / rows with a target) is accumulated into
// dlogits at idx.
func SparseKLTargets[F Float](dlogits, logits []F, idx []int32, val []float32, k int, tg []int, vocab int, weight float64) float64 {
	if (len(idx) < len(tg)*k || len(val) < len(tg)*k) && CountTargets(tg) > 0 {
		panic(fmt.Sprintf("SparseKL: %d/%d teacher entries for %d rows × %d", len(idx), len(val), len(tg), k))
	}
	return targetMean(tg, weight, func(r int, scale float64) float64 {
		z := logits[r*vocab : (r+1)*vocab]
		ix, a := idx[r*k:(r+1)*k], val[r*k:(r+1)*k]
		b := make([]F, k)
		for i, v := range ix {
			b[i] = z[v]
		}
		lseT, lse := LogSumExp(a), LogSumExp(b)
		var kl float64
		for i, v := range ix {
			lp := float64(a[i]) - lseT
			lq := float64(b[i]) - lse
			p := math.Exp(lp)
			kl += p * (lp - lq)
			if dlogits != nil {
				dlogits[r*vocab+int(v)] += F((math.Exp(lq) - p) * scale)
			}
		}
		return kl
	})
}

// SumRows sums row losses in row order.
func SumRows(r []float64) float64 {
	var s float64
	for _, v := range r {
		s += v
	}
	return s
}

// ParFor runs f(0..n-1) on up to workers goroutines (ParallelFor), or on
// the calling goroutine when workers ≤ 1. Callers write disjoint outputs,
// so the result does not depend on workers.
func ParFor(workers, n int, f func(i int)) {
	if workers <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	ParallelFor(n, f)
}

// BackendWorkers is the worker count of a backend that has one (the CPU
// backend), else unbounded (1<<30).
func BackendWorkers(be backend.Backend) int {
	if w, ok := be.(interface{ Workers() int }); ok {
		return w.Workers()
	}
	return 1 << 30
}
