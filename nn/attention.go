package nn

import "math"

// AttentionForward computes causal grouped-query attention for T query tokens
// of one sequence that follow past cached tokens. q is [T × nH × d], k and v
// are [(past+T) × nKV × d] (cache first), out is [T × nH × d]. Query t sits at
// position past+t and attends to keys 0..past+t. Query head h reads KV head
// h / (nH/nKV). If probs is not nil it receives the softmax probabilities
// [nH × T × (past+T)] for the backward pass. Heads run in parallel; each
// writes only its own slices.
func AttentionForward(out, probs, q, k, v []float32, T, past, nH, nKV, d int) {
	group := nH / nKV
	scale := float32(1 / math.Sqrt(float64(d)))
	qs, kvs := nH*d, nKV*d
	ParallelFor(nH, func(h int) {
		kh := h / group
		Tk := past + T
		att := make([]float32, Tk)
		for t := 0; t < T; t++ {
			last := past + t
			qt := q[t*qs+h*d : t*qs+h*d+d]
			mx := float32(math.Inf(-1))
			for j := 0; j <= last; j++ {
				s := Dot(qt, k[j*kvs+kh*d:j*kvs+kh*d+d]) * scale
				att[j] = s
				if s > mx {
					mx = s
				}
			}
			var sum float64
			for j := 0; j <= last; j++ {
				e := float32(math.Exp(float64(att[j] - mx)))
				att[j] = e
				sum += float64(e)
			}
			inv := float32(1 / sum)
			ot := out[t*qs+h*d : t*qs+h*d+d]
			clear(ot)
			for j := 0; j <= last; j++ {
				p := att[j] * inv
				att[j] = p
				vj := v[j*kvs+kh*d : j*kvs+kh*d+d]
				for i, vv := range vj {
					ot[i] += p * vv
				}
			}
			if probs != nil {
				copy(probs[(h*T+t)*Tk:(h*T+t)*Tk+last+1], att[:last+1])
			}
		}
	})
}
