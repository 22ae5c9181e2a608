// Package nn holds the layers of the Llama block as small forward functions
// (and, in *_backward.go, their backward twins), in the style of llm.c: each
// op works on flat row-major float32 slices, readable top to bottom.
//
// Reductions whose length grows with the model (RMSNorm's sum of squares,
// softmax normalisers) accumulate in float64; dot products of one head
// (head_dim ≤ 256) accumulate in float32.
package nn

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// serialScopes counts the callers that asked for serial element-wise ops
// (SerialScope).
var serialScopes atomic.Int32

// SerialScope makes ParallelFor run on the calling goroutine until the
// returned function is called (scopes nest and may overlap). It is for
// callers that already keep every core busy with independent work, e.g.
// one fine-tuning per core (train.Pool): fanning each small op out again
// only adds barriers, and on a loaded machine every barrier waits for a
// thread the OS has parked. Results never depend on it.
func SerialScope() (end func()) {
	serialScopes.Add(1)
	var once sync.Once
	return func() { once.Do(func() { serialScopes.Add(-1) }) }
}

// ParallelFor runs f(i) for i in [0,n) on up to GOMAXPROCS goroutines (one
// inside a SerialScope). Each index is processed by exactly one goroutine,
// so results are independent of the worker count as long as f(i) only
// writes its own outputs.
func ParallelFor(n int, f func(i int)) {
	w := runtime.GOMAXPROCS(0)
	if serialScopes.Load() > 0 {
		w = 1
	}
	if w > n {
		w = n
	}
	if w <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	// Indices are handed out in chunks from an atomic counter (a lock per
	// index made the small row loops of attention mostly futex traffic),
	// and the caller works too instead of only waiting.
	chunk := max(1, n/(8*w))
	var next atomic.Int64
	work := func() {
		for {
			lo := int(next.Add(int64(chunk))) - chunk
			if lo >= n {
				return
			}
			for i := lo; i < min(lo+chunk, n); i++ {
				f(i)
			}
		}
	}
	var wg sync.WaitGroup
	for g := 1; g < w; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// RMSNormForward computes out[r] = x[r] / rms(x[r]) * w for each of rows rows
// of length dim, where rms = sqrt(mean(x²) + eps). rstd (len rows, may be nil)
// receives 1/rms for the backward pass. out may alias x.
func RMSNormForward(out, rstd, x, w []float32, rows, dim int, eps float64) {
	RMSNormForwardT(out, rstd, x, w, rows, dim, eps)
}

// AddBias adds b to every row of x (rows × len(b)).
func AddBias(x, b []float32, rows int) { AddBiasT(x, b, rows) }

// SwiGLUForward computes out = silu(gate) * up elementwise. out may alias
// gate or up.
func SwiGLUForward(out, gate, up []float32) { SwiGLUForwardT(out, gate, up) }

// Dot is a float32 dot product with four accumulators.
func Dot(a, b []float32) float32 { return DotT(a, b) }

// LogSoftmaxAt returns log p(target) for one row of logits, computed in
// float64.
func LogSoftmaxAt(logits []float32, target int) float64 {
	return float64(logits[target]) - LogSumExp(logits)
}

// LogSumExp of a row, in float64 (max, differences and sum), for the losses
// of training and the scores of evaluation alike.
func LogSumExp[F Float](row []F) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		if float64(v) > mx { // a NaN is skipped here but still poisons the sum
			mx = float64(v)
		}
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

// scratchPool recycles the float32 work buffers of the attention products,
// which are rebuilt on every call and fully overwritten before being read:
// allocating them anew cleared (and later collected) up to a megabyte per
// layer and step.
var scratchPool sync.Pool // *[]float32

// getScratch returns a buffer of n float32s with arbitrary contents; hand it
// back with putScratch.
func getScratch(n int) *[]float32 {
	if p, _ := scratchPool.Get().(*[]float32); p != nil {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
		// Too small: drop it rather than put it back, so the pool settles
		// on the largest size in use (putting it back made the attention
		// backward, whose scratch is bigger than the forward's, allocate
		// and clear a new one about every other call).
	}
	b := make([]float32, n)
	return &b
}

func putScratch(p *[]float32) { scratchPool.Put(p) }

// carve splits the first n floats off *buf (capacity-limited).
func carve(buf *[]float32, n int) []float32 {
	s := (*buf)[:n:n]
	*buf = (*buf)[n:]
	return s
}
