package train

import "math"

// adamwConsts are the per-step scalars of the fused AdamW update, rounded
// to float32 once per step (the layout is read by the assembly kernel).
type adamwConsts struct {
	decay  float32 // 1 − lr·wd
	b1     float32
	c1     float32 // 1 − β1
	b2     float32
	c2     float32 // 1 − β2
	bc2s   float32 // √(1 − β2ᵗ)
	eps    float32
	negLR1 float32 // −lr / (1 − β1ᵗ)
}

// adamwGo is the portable fused update of n elements, in float32 with the
// operation order of torch.optim.AdamW (foreach=False):
//
//	w ← w·decay; m ← m·β1 + g·(1−β1); v ← v·β2 + (g·g)·(1−β2)
//	w ← w + (−step·m) / (√v / √(1−β2ᵗ) + eps)
//
// Every operation is rounded to float32 (explicit conversions forbid FMA
// fusion), so the assembly kernel, which does the same IEEE operations
// lane by lane, gives bitwise the same result. It returns false when a
// gradient is not finite.
func adamwGo(w, g, m, v []float32, c *adamwConsts) bool {
	ok := true
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	for i := range w {
		gi := g[i]
		wi := float32(w[i] * c.decay)
		mi := float32(float32(m[i]*c.b1) + float32(gi*c.c1))
		vi := float32(float32(v[i]*c.b2) + float32(float32(gi*gi)*c.c2))
		den := float32(float32(float32(math.Sqrt(float64(vi)))/c.bc2s) + c.eps)
		w[i] = float32(wi + float32(float32(c.negLR1*mi)/den))
		m[i], v[i] = mi, vi
		if gi-gi != 0 { // NaN exactly for ±Inf and NaN
			ok = false
		}
	}
	return ok
}

// adamwFused updates w, m, v in place with the fastest available kernel.
func adamwFused(w, g, m, v []float32, c *adamwConsts) bool {
	n := len(w)
	k := 0
	ok := true
	if hasAdamWAsm && n >= 8 {
		k = n &^ 7
		ok = adamwAsm(&w[0], &g[0], &m[0], &v[0], k, c)
	}
	return adamwGo(w[k:], g[k:n], m[k:n], v[k:n], c) && ok
}
