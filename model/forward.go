package model

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// rope returns the model's rotary tables, built once and grown to n positions.
func (m *Model) ropeFor(n int) *nn.Rope {
	m.ropeMu.Lock()
	defer m.ropeMu.Unlock()
	if m.rope == nil {
		c := m.Cfg
		var sc *nn.RopeScaling
		if c.RopeScaling != nil && c.RopeScaling.Type == "llama3" {
			sc = &nn.RopeScaling{Factor: c.RopeScaling.Factor, LowFreqFactor: c.RopeScaling.LowFreqFactor,
				HighFreqFactor: c.RopeScaling.HighFreqFactor, OriginalMaxPos: c.RopeScaling.OriginalMaxPositionEmbeddings}
		}
		theta := c.RopeTheta
		if theta == 0 {
			theta = 10000
		}
		m.rope = nn.NewRope(c.HeadDim, theta, c.Rope == RopeInterleaved, sc)
	}
	m.rope.Ensure(n)
	return m.rope
}

// Rope exposes the rotary tables (grown to n positions) to the training code.
func (m *Model) Rope(n int) *nn.Rope { return m.ropeFor(n) }

// KVCache holds the keys and values of past tokens of one sequence, per layer,
// for incremental decoding.
type KVCache struct {
	Len  int
	k, v [][]float32 // per layer, [Len × KVHeads*HeadDim]
}

// NewCache returns an empty cache for m.
func (m *Model) NewCache() *KVCache {
	return &KVCache{k: make([][]float32, len(m.Layers)), v: make([][]float32, len(m.Layers))}
}

// Forward runs the model on a batch of token sequences. Sequences may have
// different lengths; each starts at position 0 and attends causally to
// itself only. It returns logits [Σlen(seqs) × Vocab], rows in sequence order.
func (m *Model) Forward(be backend.Backend, seqs [][]int) []float32 {
	x, rows := m.Hidden(be, seqs, nil)
	return m.Logits(be, x, rows)
}

// Logits applies the LM head to rows of final hidden states.
func (m *Model) Logits(be backend.Backend, hidden []float32, rows int) []float32 {
	out := make([]float32, rows*m.Cfg.Vocab)
	be.MatMulNT(out, hidden, m.LMHead, rows, m.Cfg.Vocab, m.Cfg.Hidden, false)
	return out
}

// Step runs new tokens of one sequence through the model, appending their
// keys and values to cache, and returns the logits of the last token.
func (m *Model) Step(be backend.Backend, cache *KVCache, tokens []int) []float32 {
	x, rows := m.Hidden(be, [][]int{tokens}, cache)
	return m.Logits(be, x[(rows-1)*m.Cfg.Hidden:], 1)
}

// Hidden returns the final-normed hidden states [Σlen × Hidden] and the
// number of rows. With a cache (one sequence only), positions continue after
// the cached tokens and the cache is extended.
func (m *Model) Hidden(be backend.Backend, seqs [][]int, cache *KVCache) ([]float32, int) {
	c := m.Cfg
	H := c.Hidden
	rows := 0
	maxLen := 0
	for _, s := range seqs {
		rows += len(s)
		maxLen = max(maxLen, len(s))
	}
	past := 0
	if cache != nil {
		if len(seqs) != 1 {
			panic("model: a KV cache serves exactly one sequence")
		}
		past = cache.Len
	}
	rope := m.ropeFor(past + maxLen)
	x := make([]float32, rows*H)
	r := 0
	for _, s := range seqs {
		for _, id := range s {
			copy(x[r*H:(r+1)*H], m.Embed[id*H:(id+1)*H])
			r++
		}
	}
	for li := range m.Layers {
		m.layerForward(be, rope, li, x, seqs, rows, cache, past)
	}
	if cache != nil {
		cache.Len += rows
	}
	nn.RMSNormForward(x, nil, x, m.Norm, rows, H, c.RMSEps)
	return x, rows
}

// layerForward applies decoder layer li to the residual stream x in place.
func (m *Model) layerForward(be backend.Backend, rope *nn.Rope, li int, x []float32, seqs [][]int, rows int, cache *KVCache, past int) {
	c := m.Cfg
	l := &m.Layers[li]
	H, d := c.Hidden, c.HeadDim
	xn := make([]float32, rows*H)
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		nn.RMSNormForward(xn, nil, x, l.AttnNorm, rows, H, c.RMSEps)
		q := make([]float32, rows*qd)
		k := make([]float32, rows*kvd)
		v := make([]float32, rows*kvd)
		be.MatMulNT(q, xn, l.Wq, rows, qd, H, false)
		be.MatMulNT(k, xn, l.Wk, rows, kvd, H, false)
		be.MatMulNT(v, xn, l.Wv, rows, kvd, H, false)
		nn.AddBias(q, l.Bq, rows)
		nn.AddBias(k, l.Bk, rows)
		nn.AddBias(v, l.Bv, rows)
		att := make([]float32, rows*qd)
		r0 := 0
		for _, s := range seqs {
			T := len(s)
			qs, ks, vs := q[r0*qd:(r0+T)*qd], k[r0*kvd:(r0+T)*kvd], v[r0*kvd:(r0+T)*kvd]
			rope.Forward(qs, T, l.Heads, past)
			rope.Forward(ks, T, l.KVHeads, past)
			if cache != nil {
				cache.k[li] = append(cache.k[li], ks...)
				cache.v[li] = append(cache.v[li], vs...)
				ks, vs = cache.k[li], cache.v[li]
			}
			nn.AttentionForwardGEMM(be, att[r0*qd:(r0+T)*qd], nil, qs, ks, vs, T, past, l.Heads, l.KVHeads, d)
			r0 += T
		}
		be.MatMulNT(xn, att, l.Wo, rows, H, qd, false)
		nn.AddBias(xn, l.Bo, rows)
		for i, v := range xn {
			x[i] += v
		}
	}
	if l.Inter > 0 {
		nn.RMSNormForward(xn, nil, x, l.MLPNorm, rows, H, c.RMSEps)
		g := make([]float32, rows*l.Inter)
		u := make([]float32, rows*l.Inter)
		be.MatMulNT(g, xn, l.Wgate, rows, l.Inter, H, false)
		be.MatMulNT(u, xn, l.Wup, rows, l.Inter, H, false)
		nn.AddBias(g, l.Bgate, rows)
		nn.AddBias(u, l.Bup, rows)
		nn.SwiGLUForward(g, g, u)
		be.MatMulNT(xn, g, l.Wdown, rows, H, l.Inter, false)
		nn.AddBias(xn, l.Bdown, rows)
		for i, v := range xn {
			x[i] += v
		}
	}
}
