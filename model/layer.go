package model

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// ActKind names an activation a layer reports to an ActivationSink.
type ActKind int

const (
	// OProjInput is the attention output before o_proj [rows × Heads*HeadDim].
	OProjInput ActKind = iota
	// DownProjInput is the SwiGLU activation silu(gate)·up [rows × Inter].
	DownProjInput
)

func (k ActKind) String() string {
	if k == DownProjInput {
		return "down_proj input"
	}
	return "o_proj input"
}

// ActivationSink receives the inputs of a layer's o_proj and down_proj as the
// forward pass computes them (for Hessians of structured pruning). x is
// row-major [rows × cols], valid only during the call and must not be
// modified. Calls for one forward pass come in layer order, from one
// goroutine.
type ActivationSink interface {
	Activation(layer int, kind ActKind, x []float32, rows, cols int)
}

// LayerActs are the activations of one layer saved by the train-mode forward
// pass for the backward pass.
type LayerActs[F nn.Float] struct {
	X0, Rstd1, Xn1 []F // layer input, attention-norm 1/rms and output
	Q, K, V        []F // after bias and RoPE
	Att            []F // attention output (before o_proj)
	Probs          [][]F
	X1, Rstd2, Xn2 []F // residual after attention, MLP-norm 1/rms and output
	G, U, H        []F // gate and up projections (after bias), silu(G)·U
}

// segPlan is where a segment sits in the batch: its first row, its first
// position, and the segments whose keys it attends to (root first, itself
// last).
type segPlan struct {
	row, pos int
	chain    []int
}

// batch is the row layout of one forward pass.
type batch struct {
	lens   []int
	plan   []segPlan
	rows   int
	maxPos int
}

// newBatch lays out segments (Parent −1 for independent sequences) whose
// roots start at position past.
func newBatch(segs []Segment, past int) *batch {
	b := &batch{lens: make([]int, len(segs)), plan: make([]segPlan, len(segs))}
	for i, s := range segs {
		p := segPlan{row: b.rows, pos: past, chain: []int{i}}
		if s.Parent >= 0 {
			pp := b.plan[s.Parent]
			p.pos = pp.pos + len(segs[s.Parent].Tokens)
			p.chain = append(append([]int(nil), pp.chain...), i)
		}
		b.plan[i], b.lens[i] = p, len(s.Tokens)
		b.rows += len(s.Tokens)
		b.maxPos = max(b.maxPos, p.pos+len(s.Tokens))
	}
	return b
}

// seqBatch lays out independent sequences of the given lengths from position 0.
func seqBatch(seqLens []int) *batch {
	b := &batch{lens: seqLens, plan: make([]segPlan, len(seqLens))}
	for i, T := range seqLens {
		b.plan[i] = segPlan{row: b.rows, chain: []int{i}}
		b.rows += T
		b.maxPos = max(b.maxPos, T)
	}
	return b
}

// layerPass is how one layer runs: the batch, and optionally a KV cache
// (inference, float32, one segment), saved activations (training, independent
// segments from position 0) and an activation sink.
type layerPass[F nn.Float] struct {
	be        backend.Backend
	rope      *nn.Rope
	d         int
	eps       float64
	li        int
	b         *batch
	cache     *KVCache
	acts      *LayerActs[F]
	saveProbs bool
	sink      ActivationSink
}

// LayerForward applies decoder layer l (index li, as reported to sink) to the
// residual stream x [rows × Hidden] of packed independent sequences of the
// given lengths, each from position 0, in place. It is the one layer forward
// of the project: inference (Model.Forward and friends), training and
// Hessian capture all run it, so their results agree bitwise. With a != nil
// it saves the activations the backward pass needs (and the attention
// probabilities when saveProbs); sink (may be nil) receives the o_proj and
// down_proj inputs. c supplies HeadDim and RMSEps; rope must cover the
// longest sequence.
func LayerForward[F nn.Float](be backend.Backend, rope *nn.Rope, c Config, li int, l *LayerOf[F], x []F, seqLens []int, a *LayerActs[F], saveProbs bool, sink ActivationSink) {
	p := &layerPass[F]{be: be, rope: rope, d: c.HeadDim, eps: c.RMSEps, li: li, b: seqBatch(seqLens), acts: a, saveProbs: saveProbs, sink: sink}
	p.run(l, x)
}

// emit hands an activation to the sink, converting it to float32 if needed.
func (p *layerPass[F]) emit(kind ActKind, x []F, rows, cols int) {
	if p.sink == nil {
		return
	}
	x32, ok := any(x).([]float32)
	if !ok {
		x32 = make([]float32, len(x))
		for i, v := range x {
			x32[i] = float32(v)
		}
	}
	p.sink.Activation(p.li, kind, x32, rows, cols)
}

func (p *layerPass[F]) run(l *LayerOf[F], x []F) {
	be, d, eps, b := p.be, p.d, p.eps, p.b
	rows := b.rows
	if rows == 0 {
		return
	}
	H := len(x) / rows
	a := p.acts
	save := a != nil
	if save && (p.cache != nil || hasChains(b)) {
		panic("model: saved activations need independent sequences from position 0")
	}
	if save {
		a.X0 = append([]F(nil), x...)
	}
	// Inference reuses one scratch buffer for the normed input and the
	// sublayer output; training keeps each.
	var scratch []F
	buf := func() []F {
		if save {
			return make([]F, rows*H)
		}
		if scratch == nil {
			scratch = make([]F, rows*H)
		}
		return scratch
	}
	var rstd []F
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		xn := buf()
		if save {
			rstd = make([]F, rows)
		}
		nn.RMSNormForwardT(xn, rstd, x, l.AttnNorm, rows, H, eps)
		q, k, v := make([]F, rows*qd), make([]F, rows*kvd), make([]F, rows*kvd)
		nn.MatNT(be, q, xn, l.Wq, rows, qd, H, false)
		nn.MatNT(be, k, xn, l.Wk, rows, kvd, H, false)
		nn.MatNT(be, v, xn, l.Wv, rows, kvd, H, false)
		nn.AddBiasT(q, l.Bq, rows)
		nn.AddBiasT(k, l.Bk, rows)
		nn.AddBiasT(v, l.Bv, rows)
		// Rotate every segment's queries and keys first, so that children can
		// then read their ancestors' rotated keys. Segments are independent
		// here and in the attention below: each goroutine writes only its own
		// rows, so the result does not depend on the scheduling.
		nn.ParallelFor(len(b.plan), func(si int) {
			sp, T := b.plan[si], b.lens[si]
			nn.RopeForwardT(p.rope, q[sp.row*qd:(sp.row+T)*qd], T, l.Heads, sp.pos)
			nn.RopeForwardT(p.rope, k[sp.row*kvd:(sp.row+T)*kvd], T, l.KVHeads, sp.pos)
		})
		att := make([]F, rows*qd)
		if save && p.saveProbs {
			a.Probs = make([][]F, len(b.plan))
		}
		nn.ParallelFor(len(b.plan), func(si int) {
			sp, T := b.plan[si], b.lens[si]
			ks, vs := k[sp.row*kvd:(sp.row+T)*kvd], v[sp.row*kvd:(sp.row+T)*kvd]
			switch {
			case p.cache != nil: // one segment, float32 (checked by the callers)
				kc, vc := &p.cache.k[p.li], &p.cache.v[p.li]
				*kc = append(*kc, any(ks).([]float32)...)
				*vc = append(*vc, any(vs).([]float32)...)
				ks, vs = any(*kc).([]F), any(*vc).([]F)
			case len(sp.chain) > 1:
				var kb, vb []F
				for _, c := range sp.chain {
					pc, n := b.plan[c], b.lens[c]
					kb = append(kb, k[pc.row*kvd:(pc.row+n)*kvd]...)
					vb = append(vb, v[pc.row*kvd:(pc.row+n)*kvd]...)
				}
				ks, vs = kb, vb
			}
			var probs []F
			if save && p.saveProbs {
				probs = make([]F, l.Heads*T*T)
				a.Probs[si] = probs
			}
			nn.AttentionForwardT(be, att[sp.row*qd:(sp.row+T)*qd], probs, q[sp.row*qd:(sp.row+T)*qd], ks, vs, T, sp.pos, l.Heads, l.KVHeads, l.KVMap, d)
		})
		p.emit(OProjInput, att, rows, qd)
		y := buf()
		nn.MatNT(be, y, att, l.Wo, rows, H, qd, false)
		nn.AddBiasT(y, l.Bo, rows)
		for i, v := range y {
			x[i] += v
		}
		if save {
			a.Rstd1, a.Xn1, a.Q, a.K, a.V, a.Att = rstd, xn, q, k, v, att
		}
	}
	if l.Inter > 0 {
		I := l.Inter
		if save {
			if l.Heads > 0 {
				a.X1 = append([]F(nil), x...)
			} else {
				a.X1 = a.X0
			}
			rstd = make([]F, rows)
		} else {
			rstd = nil
		}
		xn := buf()
		nn.RMSNormForwardT(xn, rstd, x, l.MLPNorm, rows, H, eps)
		g, u := make([]F, rows*I), make([]F, rows*I)
		nn.MatNT(be, g, xn, l.Wgate, rows, I, H, false)
		nn.MatNT(be, u, xn, l.Wup, rows, I, H, false)
		nn.AddBiasT(g, l.Bgate, rows)
		nn.AddBiasT(u, l.Bup, rows)
		h := g // inference: silu(g)·u in place
		if save {
			h = make([]F, rows*I)
		}
		nn.SwiGLUForwardBE(be, h, g, u)
		p.emit(DownProjInput, h, rows, I)
		y := buf()
		nn.MatNT(be, y, h, l.Wdown, rows, H, I, false)
		nn.AddBiasT(y, l.Bdown, rows)
		for i, v := range y {
			x[i] += v
		}
		if save {
			a.Rstd2, a.Xn2, a.G, a.U, a.H = rstd, xn, g, u, h
		}
	}
}

func hasChains(b *batch) bool {
	for _, p := range b.plan {
		if len(p.chain) > 1 {
			return true
		}
	}
	return false
}

// SeqLens returns the lengths of seqs.
func SeqLens(seqs [][]int) []int {
	lens := make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = len(s)
	}
	return lens
}

// EmbedSeqs returns the token embeddings of the packed sequences
// [Σlen × Hidden], the input of layer 0. Token ids must be in range.
func (m *Model) EmbedSeqs(seqs [][]int) []float32 {
	H := m.Cfg.Hidden
	rows := 0
	for _, s := range seqs {
		rows += len(s)
	}
	x := make([]float32, 0, rows*H)
	for _, s := range seqs {
		for _, id := range s {
			x = append(x, m.Embed[id*H:(id+1)*H]...)
		}
	}
	return x
}

// RunLayer applies layer li alone to the hidden states x [Σlen × Hidden] of
// packed independent sequences of the given lengths (each from position 0)
// in place, reporting its o_proj and down_proj inputs to sink (may be nil).
// EmbedSeqs followed by RunLayer for li = 0..L−1 and FinalNorm is exactly
// Hidden; running one layer at a time lets a caller keep one layer's
// activations in memory.
func (m *Model) RunLayer(be backend.Backend, li int, x []float32, seqLens []int, sink ActivationSink) error {
	if li < 0 || li >= len(m.Layers) {
		return fmt.Errorf("model: layer %d out of range [0, %d)", li, len(m.Layers))
	}
	b := seqBatch(seqLens)
	if len(x) != b.rows*m.Cfg.Hidden {
		return fmt.Errorf("model: hidden states have %d values, want %d rows × %d", len(x), b.rows, m.Cfg.Hidden)
	}
	p := &layerPass[float32]{be: be, rope: m.ropeFor(b.maxPos), d: m.Cfg.HeadDim, eps: m.Cfg.RMSEps, li: li, b: b, sink: sink}
	p.run(&m.Layers[li], x)
	return nil
}

// FinalNorm applies the final RMSNorm to rows of hidden states in place.
func (m *Model) FinalNorm(x []float32, rows int) {
	nn.RMSNormForward(x, nil, x, m.Norm, rows, m.Cfg.Hidden, m.Cfg.RMSEps)
}
