package nn

import (
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
)

// adamwGo is the portable fused AdamW update of n elements, in float32 with
// the operation order of torch.optim.AdamW (foreach=False):
//
//	w ← w·decay; m ← m·β1 + g·(1−β1); v ← v·β2 + (g·g)·(1−β2)
//	w ← w + (−step·m) / (√v / √(1−β2ᵗ) + eps)
//
// Every operation is rounded to float32 (explicit conversions forbid FMA
// fusion), so the assembly kernel, which does the same IEEE operations
// lane by lane, gives bitwise the same result. It returns false when a
// gradient is not finite.
func adamwGo(w, g, m, v []float32, c *backend.AdamWStep) bool {
	ok := true
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	for i := range w {
		gi := g[i]
		wi := float32(w[i] * c.Decay)
		mi := float32(float32(m[i]*c.B1) + float32(gi*c.C1))
		vi := float32(float32(v[i]*c.B2) + float32(float32(gi*gi)*c.C2))
		den := float32(float32(float32(math.Sqrt(float64(vi)))/c.BC2s) + c.Eps)
		w[i] = float32(wi + float32(float32(c.NegLR1*mi)/den))
		m[i], v[i] = mi, vi
		if gi-gi != 0 { // NaN exactly for ±Inf and NaN
			ok = false
		}
	}
	return ok
}

// adamwFused updates w, m, v in place with the fastest available kernel.
func adamwFused(w, g, m, v []float32, c *backend.AdamWStep) bool {
	n := len(w)
	k := 0
	ok := true
	if hasAdamWAsm && n >= 8 {
		k = n &^ 7
		ok = adamwAsm(&w[0], &g[0], &m[0], &v[0], k, c)
	}
	return adamwGo(w[k:], g[k:n], m[k:n], v[k:n], c) && ok
}

// AdamWParallel is the tensor size from which AdamW splits the update into
// chunks of AdamWParallel/4 elements run in parallel; smaller tensors are
// updated on the calling goroutine (the fused kernel does ~1M elements in
// well under a millisecond).
const AdamWParallel = 1 << 20

// AdamW does one fused float32 AdamW update of the tensor w (len(w)
// elements of g, m, v) with the step's scalars and reports whether every
// gradient was finite (the update is applied regardless). The update is
// element-wise, so the chunking does not change any bit.
func AdamW(w, g, m, v []float32, c *backend.AdamWStep) bool {
	if len(w) < AdamWParallel {
		return adamwFused(w, g, m, v, c)
	}
	const chunk = AdamWParallel / 4
	nc := (len(w) + chunk - 1) / chunk
	okp := make([]bool, nc)
	ParallelFor(nc, func(i int) {
		i0, i1 := i*chunk, min(len(w), (i+1)*chunk)
		okp[i] = adamwFused(w[i0:i1], g[i0:i1], m[i0:i1], v[i0:i1], c)
	})
	ok := true
	for _, b := range okp {
		ok = ok && b
	}
	return ok
}

// AdamWT is AdamW for either element type: the fused float32 kernel, or for
// float64 (gradient checks) the same formulas in double precision.
func AdamWT[F Float](w, g, m, v []F, c *backend.AdamWStep) bool {
	if w32, ok := any(w).([]float32); ok {
		return AdamW(w32, any(g).([]float32), any(m).([]float32), any(v).([]float32), c)
	}
	ok := true
	decay, b1, c1, b2, c2 := F(c.Decay), F(c.B1), F(c.C1), F(c.B2), F(c.C2)
	bc2s, eps, neg := F(c.BC2s), F(c.Eps), F(c.NegLR1)
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	for i := range w {
		gi := g[i]
		mi := m[i]*b1 + gi*c1
		vi := v[i]*b2 + gi*gi*c2
		den := F(math.Sqrt(float64(vi)))/bc2s + eps
		w[i] = w[i]*decay + neg*mi/den
		m[i], v[i] = mi, vi
		if gi-gi != 0 {
			ok = false
		}
	}
	return ok
}
