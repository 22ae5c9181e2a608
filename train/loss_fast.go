package train

import (
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/internal/fastmath"
	"github.com/darwinlm/darwinlm-go/nn"
)

// crossEntropyInto is CrossEntropy for float32 logits, fast: each row's
// softmax is computed by the backend's vectorised row kernel (float32
// exps, see backend.RowKernels) straight into dlogits, which it
// overwrites (rows without a target are zeroed) instead of accumulating.
// Precision: the loss is −log p_t from the float32 softmax (≈1e-7
// relative); where p_t > 1/2, 1 − p_t is summed from the other
// probabilities instead (no cancellation), and where p_t underflows the
// row falls back to the exact float64 log-sum-exp. workers bounds the
// goroutines (1: the calling one only).
func crossEntropyInto(be backend.Backend, workers int, dlogits, logits []float32, seqs [][]int, vocab int, weight float64) float64 {
	tg := rowTargets(seqs)
	n := Positions(seqs)
	if n == 0 {
		clear(dlogits[:len(tg)*vocab])
		return 0
	}
	rk, _ := be.(backend.RowKernels)
	row := make([]float64, len(tg))
	scale := weight / float64(n)
	s32 := float32(scale)
	parFor(workers, len(tg), func(r int) {
		dz := dlogits[r*vocab : (r+1)*vocab]
		t := tg[r]
		if t < 0 {
			clear(dz)
			return
		}
		z := logits[r*vocab : (r+1)*vocab]
		copy(dz, z)
		softmaxRow(rk, dz)
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
				row[r] = nn.LogSumExp(z) - float64(z[t])
			}
		}
		for v := range dz {
			dz[v] *= s32
		}
		dz[t] = float32(-oneMinus * scale)
	})
	return sumRows(row) / float64(n)
}

// softmaxRow turns x into softmax(x) in place (the backend's row kernel
// when it has one, else the same computation in Go).
func softmaxRow(rk backend.RowKernels, x []float32) {
	if rk != nil {
		rk.SoftmaxCausalRow(x, len(x)-1, 1)
		return
	}
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	var sum float64
	for j, v := range x {
		e := fastmath.Expf(v - mx)
		x[j] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for j := range x {
		x[j] *= inv
	}
}

// parFor runs f(0..n-1) on up to workers goroutines (nn.ParallelFor), or on
// the calling goroutine when workers ≤ 1. Callers write disjoint outputs,
// so the result does not depend on workers.
func parFor(workers, n int, f func(i int)) {
	if workers <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	nn.ParallelFor(n, f)
}

// backendWorkers is the worker count of a backend that has one (the CPU
// backend), else GOMAXPROCS-wide (0 means "no limit" to parFor's caller).
func backendWorkers(be backend.Backend) int {
	if w, ok := be.(interface{ Workers() int }); ok {
		return w.Workers()
	}
	return 1 << 30
}
