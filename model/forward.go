package model

import (
	"fmt"

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

// Segment is a run of tokens in a batch. Independent sequences have Parent
// −1. A segment with Parent ≥ 0 continues segment Parent (which must come
// earlier in the batch): its positions follow the parent's chain and it
// attends to the chain's keys and values as well as its own. Many
// continuations of one context can so share one forward pass of the context,
// and every row gets exactly the computation of the unshared sequence.
type Segment struct {
	Tokens []int
	Parent int
}

// Hidden returns the final-normed hidden states [Σlen × Hidden] and the
// number of rows. With a cache (one sequence only), positions continue after
// the cached tokens and the cache is extended.
func (m *Model) Hidden(be backend.Backend, seqs [][]int, cache *KVCache) ([]float32, int) {
	if cache != nil && len(seqs) != 1 {
		panic("model: a KV cache serves exactly one sequence")
	}
	segs := make([]Segment, len(seqs))
	for i, s := range seqs {
		segs[i] = Segment{Tokens: s, Parent: -1}
	}
	return m.hidden(be, segs, cache)
}

// HiddenSegments is Hidden for a batch of segments (see Segment). Row order
// is segment order.
func (m *Model) HiddenSegments(be backend.Backend, segs []Segment) ([]float32, int, error) {
	for i, s := range segs {
		if s.Parent >= i || s.Parent < -1 {
			return nil, 0, fmt.Errorf("model: segment %d has parent %d; a parent must precede its child", i, s.Parent)
		}
	}
	x, rows := m.hidden(be, segs, nil)
	return x, rows, nil
}

// segPlan is where each segment sits in the batch: its first row, its first
// position, and the segments whose keys it attends to (root first, itself
// last).
type segPlan struct {
	row, pos int
	chain    []int
}

func (m *Model) hidden(be backend.Backend, segs []Segment, cache *KVCache) ([]float32, int) {
	c := m.Cfg
	H := c.Hidden
	past := 0
	if cache != nil {
		past = cache.Len
	}
	plan := make([]segPlan, len(segs))
	rows, maxPos := 0, 0
	for i, s := range segs {
		p := segPlan{row: rows, pos: past, chain: []int{i}}
		if s.Parent >= 0 {
			pp := plan[s.Parent]
			p.pos = pp.pos + len(segs[s.Parent].Tokens)
			p.chain = append(append([]int(nil), pp.chain...), i)
		}
		plan[i] = p
		rows += len(s.Tokens)
		maxPos = max(maxPos, p.pos+len(s.Tokens))
	}
	rope := m.ropeFor(maxPos)
	x := make([]float32, rows*H)
	r := 0
	for _, s := range segs {
		for _, id := range s.Tokens {
			copy(x[r*H:(r+1)*H], m.Embed[id*H:(id+1)*H])
			r++
		}
	}
	for li := range m.Layers {
		m.layerForward(be, rope, li, x, segs, plan, rows, cache)
	}
	if cache != nil {
		cache.Len += rows
	}
	nn.RMSNormForward(x, nil, x, m.Norm, rows, H, c.RMSEps)
	return x, rows
}

// layerForward applies decoder layer li to the residual stream x in place.
func (m *Model) layerForward(be backend.Backend, rope *nn.Rope, li int, x []float32, segs []Segment, plan []segPlan, rows int, cache *KVCache) {
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
		// Rotate every segment's queries and keys first, so that children can
		// then read their ancestors' rotated keys. Segments are independent
		// here and in the attention below: each goroutine writes only its own
		// rows, so the result does not depend on the scheduling.
		nn.ParallelFor(len(segs), func(si int) {
			p, T := plan[si], len(segs[si].Tokens)
			rope.Forward(q[p.row*qd:(p.row+T)*qd], T, l.Heads, p.pos)
			rope.Forward(k[p.row*kvd:(p.row+T)*kvd], T, l.KVHeads, p.pos)
		})
		att := make([]float32, rows*qd)
		nn.ParallelFor(len(segs), func(si int) {
			p, T := plan[si], len(segs[si].Tokens)
			ks, vs := k[p.row*kvd:(p.row+T)*kvd], v[p.row*kvd:(p.row+T)*kvd]
			past := p.pos
			switch {
			case cache != nil: // one segment (checked in Hidden)
				cache.k[li] = append(cache.k[li], ks...)
				cache.v[li] = append(cache.v[li], vs...)
				ks, vs = cache.k[li], cache.v[li]
			case len(p.chain) > 1:
				var kb, vb []float32
				for _, a := range p.chain {
					pa, n := plan[a], len(segs[a].Tokens)
					kb = append(kb, k[pa.row*kvd:(pa.row+n)*kvd]...)
					vb = append(vb, v[pa.row*kvd:(pa.row+n)*kvd]...)
				}
				ks, vs = kb, vb
			}
			nn.AttentionForwardGEMM(be, att[p.row*qd:(p.row+T)*qd], nil, q[p.row*qd:(p.row+T)*qd], ks, vs, T, past, l.Heads, l.KVHeads, d)
		})
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
		nn.SwiGLUForwardBE(be, g, g, u)
		be.MatMulNT(xn, g, l.Wdown, rows, H, l.Inter, false)
		nn.AddBias(xn, l.Bdown, rows)
		for i, v := range xn {
			x[i] += v
		}
	}
}
