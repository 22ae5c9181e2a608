package train

import (
	"sync"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// LayerActs are the activations of one layer saved by the train-mode
// forward pass for its backward pass (model.LayerActs).
type LayerActs[F nn.Float] = model.LayerActs[F]

// Graph runs a model in train mode on a batch of sequences and back-propagates.
type Graph[F nn.Float] struct {
	W  *Weights[F]
	Be backend.Backend
	// SaveProbs keeps the attention probabilities [heads × T × T] of every
	// layer; otherwise (the default) the backward pass recomputes them
	// bitwise, which costs one more QKᵀ but bounds memory to O(T·width).
	SaveProbs bool
	// Sink, when set, receives every layer's o_proj and down_proj inputs
	// (float32 copies for other element types).
	Sink model.ActivationSink

	seqLens []int
	ids     []int
	rows    int
	acts    []LayerActs[F]
	xFinal  []F // residual stream before the final norm
	rstdF   []F
	xnF     []F // final-normed hidden states

	// Buffers reused from step to step (they only grow).
	bufX, bufRstd, bufXn, bufLogits, bufDx, bufDxn []F
}

// growT returns (*buf)[:n], reallocating only when the capacity is short.
// The contents are not cleared.
func growT[F nn.Float](buf *[]F, n int) []F {
	if cap(*buf) < n {
		*buf = make([]F, n)
	}
	return (*buf)[:n]
}

// NewGraph returns a graph for the weights w.
func NewGraph[F nn.Float](be backend.Backend, w *Weights[F]) *Graph[F] {
	return &Graph[F]{W: w, Be: be}
}

// Forward runs the model on seqs (each from position 0, attending causally to
// itself) and returns the logits [Σlen × Vocab]. For float32 the logits are
// bitwise those of model.Forward. The logits are valid until the next
// Forward (the buffer is reused).
func (g *Graph[F]) Forward(seqs [][]int) []F {
	c := g.W.Cfg
	H := c.Hidden
	g.seqLens, g.ids, g.rows = g.seqLens[:0], g.ids[:0], 0
	maxLen := 0
	for _, s := range seqs {
		g.seqLens = append(g.seqLens, len(s))
		g.ids = append(g.ids, s...)
		maxLen = max(maxLen, len(s))
	}
	g.rows = len(g.ids)
	rope := g.W.Rope(maxLen)
	x := growT(&g.bufX, g.rows*H)
	nn.EmbeddingForwardT(x, g.W.Embed, g.ids, H)
	if cap(g.acts) < len(g.W.Layers) {
		g.acts = make([]LayerActs[F], len(g.W.Layers))
	}
	g.acts = g.acts[:len(g.W.Layers)]
	for li := range g.W.Layers {
		model.LayerForward(g.Be, rope, c, li, &g.W.Layers[li], x, g.seqLens, &g.acts[li], g.SaveProbs, g.Sink)
	}
	g.xFinal = x
	g.rstdF = growT(&g.bufRstd, g.rows)
	g.xnF = growT(&g.bufXn, g.rows*H)
	nn.RMSNormForwardT(g.xnF, g.rstdF, x, g.W.Norm, g.rows, H, c.RMSEps)
	logits := growT(&g.bufLogits, g.rows*c.Vocab)
	nn.MatNT(g.Be, logits, g.xnF, g.W.LMHead, g.rows, c.Vocab, H, false)
	return logits
}

// Rows is the number of token rows of the last Forward.
func (g *Graph[F]) Rows() int { return g.rows }

// Backward back-propagates dlogits [rows × Vocab] (the gradient of the loss
// with respect to the logits of the last Forward) and accumulates the
// parameter gradients into grads (which must have the shapes of W, e.g.
// ZeroLike(W)). The saved activations are released.
func (g *Graph[F]) Backward(dlogits []F, grads *Weights[F]) {
	c := g.W.Cfg
	H, rows := c.Hidden, g.rows
	nn.MatTN(g.Be, grads.LMHead, dlogits, g.xnF, c.Vocab, H, rows, true)
	dxn := growT(&g.bufDxn, rows*H)
	nn.MatNN(g.Be, dxn, dlogits, g.W.LMHead, rows, H, c.Vocab, false)
	dx := growT(&g.bufDx, rows*H)
	clear(dx)
	nn.RMSNormBackward(dx, grads.Norm, dxn, g.xFinal, g.W.Norm, g.rstdF, rows, H)
	maxLen := 0
	for _, T := range g.seqLens {
		maxLen = max(maxLen, T)
	}
	rope := g.W.Rope(maxLen)
	for li := len(g.W.Layers) - 1; li >= 0; li-- {
		LayerBackward(g.Be, rope, c.HeadDim, &g.W.Layers[li], &grads.Layers[li], dx, g.seqLens, &g.acts[li])
		g.acts[li] = LayerActs[F]{}
	}
	nn.EmbeddingBackward(grads.Embed, dx, g.ids, H)
	clear(g.acts)
	g.xFinal, g.xnF, g.rstdF = nil, nil, nil
}

// LayerForward applies decoder layer l to the residual stream x [rows ×
// hidden] in place and saves its activations in a: model.LayerForward, the
// one layer forward inference runs too. seqLens are the lengths of the
// packed sequences.
func LayerForward[F nn.Float](be backend.Backend, rope *nn.Rope, d int, eps float64, l *LayerW[F], x []F, seqLens []int, a *LayerActs[F], saveProbs bool) {
	model.LayerForward(be, rope, model.Config{HeadDim: d, RMSEps: eps}, 0, l, x, seqLens, a, saveProbs, nil)
}

// LayerBackward back-propagates layer l. On entry dx holds the gradient with
// respect to the layer's output; on return, with respect to its input. The
// parameter gradients are accumulated into gl.
func LayerBackward[F nn.Float](be backend.Backend, rope *nn.Rope, d int, l, gl *LayerW[F], dx []F, seqLens []int, a *LayerActs[F]) {
	rows := 0
	for _, T := range seqLens {
		rows += T
	}
	H := len(dx) / max(rows, 1)
	// The temporaries come from one pooled slab (no garbage per step).
	qd, kvd := l.Heads*d, l.KVHeads*d
	sp := getSlab[F](rows * (3*l.Inter + H + 2*qd + 2*kvd))
	defer slabPool.Put(sp)
	slab := *sp
	take := func(n int) []F {
		t := slab[:n:n]
		slab = slab[n:]
		return t
	}
	dxn := take(rows * H)
	if l.Inter > 0 {
		I := l.Inter
		nn.AddBiasBackward(gl.Bdown, dx, rows)
		nn.MatTN(be, gl.Wdown, dx, a.H, H, I, rows, true)
		dh := take(rows * I)
		nn.MatNN(be, dh, dx, l.Wdown, rows, I, H, false)
		dg, du := take(rows*I), take(rows*I)
		nn.SwiGLUBackwardBE(be, dg, du, dh, a.G, a.U)
		nn.AddBiasBackward(gl.Bgate, dg, rows)
		nn.AddBiasBackward(gl.Bup, du, rows)
		nn.MatTN(be, gl.Wgate, dg, a.Xn2, I, H, rows, true)
		nn.MatTN(be, gl.Wup, du, a.Xn2, I, H, rows, true)
		nn.MatNN(be, dxn, dg, l.Wgate, rows, H, I, false)
		nn.MatNN(be, dxn, du, l.Wup, rows, H, I, true)
		nn.RMSNormBackward(dx, gl.MLPNorm, dxn, a.X1, l.MLPNorm, a.Rstd2, rows, H)
	}
	if l.Heads > 0 {
		nn.AddBiasBackward(gl.Bo, dx, rows)
		nn.MatTN(be, gl.Wo, dx, a.Att, H, qd, rows, true)
		datt := take(rows * qd)
		nn.MatNN(be, datt, dx, l.Wo, rows, qd, H, false)
		dq, dk, dv := take(rows*qd), take(rows*kvd), take(rows*kvd)
		clear(dq)
		clear(dk)
		clear(dv)
		starts := seqStarts(seqLens)
		nn.ParallelFor(len(seqLens), func(si int) {
			r0, T := starts[si], seqLens[si]
			var probs []F
			if a.Probs != nil {
				probs = a.Probs[si]
			}
			dqs, dks := dq[r0*qd:(r0+T)*qd], dk[r0*kvd:(r0+T)*kvd]
			nn.AttentionBackward(be, dqs, dks, dv[r0*kvd:(r0+T)*kvd], datt[r0*qd:(r0+T)*qd],
				a.Q[r0*qd:(r0+T)*qd], a.K[r0*kvd:(r0+T)*kvd], a.V[r0*kvd:(r0+T)*kvd], probs, T, l.Heads, l.KVHeads, l.KVMap, d)
			nn.RopeBackwardT(rope, dqs, T, l.Heads, 0)
			nn.RopeBackwardT(rope, dks, T, l.KVHeads, 0)
		})
		nn.AddBiasBackward(gl.Bq, dq, rows)
		nn.AddBiasBackward(gl.Bk, dk, rows)
		nn.AddBiasBackward(gl.Bv, dv, rows)
		nn.MatTN(be, gl.Wq, dq, a.Xn1, qd, H, rows, true)
		nn.MatTN(be, gl.Wk, dk, a.Xn1, kvd, H, rows, true)
		nn.MatTN(be, gl.Wv, dv, a.Xn1, kvd, H, rows, true)
		nn.MatNN(be, dxn, dq, l.Wq, rows, H, qd, false)
		nn.MatNN(be, dxn, dk, l.Wk, rows, H, kvd, true)
		nn.MatNN(be, dxn, dv, l.Wv, rows, H, kvd, true)
		nn.RMSNormBackward(dx, gl.AttnNorm, dxn, a.X0, l.AttnNorm, a.Rstd1, rows, H)
	}
}

// seqStarts returns the first row of each sequence in a ragged batch.
func seqStarts(lens []int) []int {
	starts := make([]int, len(lens))
	for i := 1; i < len(lens); i++ {
		starts[i] = starts[i-1] + lens[i-1]
	}
	return starts
}

// slabPool holds the backward pass's scratch slabs (*[]float32 or
// *[]float64); a slab of the wrong type or size is replaced.
var slabPool sync.Pool

func getSlab[F nn.Float](n int) *[]F {
	if sp, ok := slabPool.Get().(*[]F); ok && cap(*sp) >= n {
		*sp = (*sp)[:n]
		return sp
	}
	s := make([]F, n)
	return &s
}
