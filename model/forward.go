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

// HiddenSink is Hidden (without a cache) with an activation sink that
// receives every layer's o_proj and down_proj inputs.
func (m *Model) HiddenSink(be backend.Backend, seqs [][]int, sink ActivationSink) ([]float32, int) {
	segs := make([]Segment, len(seqs))
	for i, s := range seqs {
		segs[i] = Segment{Tokens: s, Parent: -1}
	}
	return m.hiddenWith(be, segs, nil, sink)
}

func (m *Model) hidden(be backend.Backend, segs []Segment, cache *KVCache) ([]float32, int) {
	return m.hiddenWith(be, segs, cache, nil)
}

func (m *Model) hiddenWith(be backend.Backend, segs []Segment, cache *KVCache, sink ActivationSink) ([]float32, int) {
	past := 0
	if cache != nil {
		past = cache.Len
	}
	b := newBatch(segs, past)
	p := &layerPass[float32]{be: be, rope: m.ropeFor(b.maxPos), d: m.Cfg.HeadDim, eps: m.Cfg.RMSEps, b: b, cache: cache, sink: sink}
	x := make([]float32, 0, b.rows*m.Cfg.Hidden)
	H := m.Cfg.Hidden
	for _, s := range segs {
		for _, id := range s.Tokens {
			x = append(x, m.Embed[id*H:(id+1)*H]...)
		}
	}
	for li := range m.Layers {
		p.li = li
		p.run(&m.Layers[li], x)
	}
	if cache != nil {
		cache.Len += b.rows
	}
	m.FinalNorm(x, b.rows)
	return x, b.rows
}
