package train

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// matNT, matNN and matTN route float32 products to the backend and run
// float64 ones (gradient checks only) with plain parallel loops.
func matNT[F nn.Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulNT(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	nn.ParallelFor(m, func(i int) {
		for j := 0; j < n; j++ {
			var s F
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[j*k+p]
			}
			if acc {
				c[i*n+j] += s
			} else {
				c[i*n+j] = s
			}
		}
	})
}

func matNN[F nn.Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulNN(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	nn.ParallelFor(m, func(i int) {
		cr := c[i*n : i*n+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			for j, bv := range b[p*n : p*n+n] {
				cr[j] += av * bv
			}
		}
	})
}

func matTN[F nn.Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulTN(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	nn.ParallelFor(m, func(i int) {
		cr := c[i*n : i*n+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[p*m+i]
			for j, bv := range b[p*n : p*n+n] {
				cr[j] += av * bv
			}
		}
	})
}

// LayerActs are the activations of one layer saved by the train-mode
// forward pass for its backward pass.
type LayerActs[F nn.Float] struct {
	X0, Rstd1, Xn1 []F // layer input, attention-norm 1/rms and output
	Q, K, V        []F // after bias and RoPE
	Att            []F // attention output (before o_proj)
	Probs          [][]F
	X1, Rstd2, Xn2 []F // residual after attention, MLP-norm 1/rms and output
	G, U, H        []F // gate and up projections (after bias), silu(G)·U
}

// Graph runs a model in train mode on a batch of sequences and back-propagates.
type Graph[F nn.Float] struct {
	W  *Weights[F]
	Be backend.Backend
	// SaveProbs keeps the attention probabilities [heads × T × T] of every
	// layer; otherwise (the default) the backward pass recomputes them
	// bitwise, which costs one more QKᵀ but bounds memory to O(T·width).
	SaveProbs bool

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
		LayerForward(g.Be, rope, c.HeadDim, c.RMSEps, &g.W.Layers[li], x, g.seqLens, &g.acts[li], g.SaveProbs)
	}
	g.xFinal = x
	g.rstdF = growT(&g.bufRstd, g.rows)
	g.xnF = growT(&g.bufXn, g.rows*H)
	nn.RMSNormForwardT(g.xnF, g.rstdF, x, g.W.Norm, g.rows, H, c.RMSEps)
	logits := growT(&g.bufLogits, g.rows*c.Vocab)
	matNT(g.Be, logits, g.xnF, g.W.LMHead, g.rows, c.Vocab, H, false)
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
	matTN(g.Be, grads.LMHead, dlogits, g.xnF, c.Vocab, H, rows, true)
	dxn := growT(&g.bufDxn, rows*H)
	matNN(g.Be, dxn, dlogits, g.W.LMHead, rows, H, c.Vocab, false)
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
// hidden] in place (exactly as model.Forward does) and saves its
// activations in a. seqLens are the lengths of the packed sequences.
func LayerForward[F nn.Float](be backend.Backend, rope *nn.Rope, d int, eps float64, l *LayerW[F], x []F, seqLens []int, a *LayerActs[F], saveProbs bool) {
	rows := 0
	for _, T := range seqLens {
		rows += T
	}
	H := len(x) / max(rows, 1)
	a.X0 = append([]F(nil), x...)
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		a.Rstd1, a.Xn1 = make([]F, rows), make([]F, rows*H)
		nn.RMSNormForwardT(a.Xn1, a.Rstd1, x, l.AttnNorm, rows, H, eps)
		a.Q, a.K, a.V = make([]F, rows*qd), make([]F, rows*kvd), make([]F, rows*kvd)
		matNT(be, a.Q, a.Xn1, l.Wq, rows, qd, H, false)
		matNT(be, a.K, a.Xn1, l.Wk, rows, kvd, H, false)
		matNT(be, a.V, a.Xn1, l.Wv, rows, kvd, H, false)
		nn.AddBiasT(a.Q, l.Bq, rows)
		nn.AddBiasT(a.K, l.Bk, rows)
		nn.AddBiasT(a.V, l.Bv, rows)
		a.Att = make([]F, rows*qd)
		if saveProbs {
			a.Probs = make([][]F, len(seqLens))
		}
		starts := seqStarts(seqLens)
		// Sequences are independent; each goroutine writes only its rows.
		nn.ParallelFor(len(seqLens), func(si int) {
			r0, T := starts[si], seqLens[si]
			qs, ks, vs := a.Q[r0*qd:(r0+T)*qd], a.K[r0*kvd:(r0+T)*kvd], a.V[r0*kvd:(r0+T)*kvd]
			nn.RopeForwardT(rope, qs, T, l.Heads, 0)
			nn.RopeForwardT(rope, ks, T, l.KVHeads, 0)
			var probs []F
			if saveProbs {
				probs = make([]F, l.Heads*T*T)
				a.Probs[si] = probs
			}
			nn.AttentionForwardT(be, a.Att[r0*qd:(r0+T)*qd], probs, qs, ks, vs, T, 0, l.Heads, l.KVHeads, d)
		})
		y := make([]F, rows*H)
		matNT(be, y, a.Att, l.Wo, rows, H, qd, false)
		nn.AddBiasT(y, l.Bo, rows)
		for i, v := range y {
			x[i] += v
		}
	}
	if l.Inter > 0 {
		if l.Heads > 0 {
			a.X1 = append([]F(nil), x...)
		} else {
			a.X1 = a.X0
		}
		a.Rstd2, a.Xn2 = make([]F, rows), make([]F, rows*H)
		nn.RMSNormForwardT(a.Xn2, a.Rstd2, x, l.MLPNorm, rows, H, eps)
		a.G, a.U, a.H = make([]F, rows*l.Inter), make([]F, rows*l.Inter), make([]F, rows*l.Inter)
		matNT(be, a.G, a.Xn2, l.Wgate, rows, l.Inter, H, false)
		matNT(be, a.U, a.Xn2, l.Wup, rows, l.Inter, H, false)
		nn.AddBiasT(a.G, l.Bgate, rows)
		nn.AddBiasT(a.U, l.Bup, rows)
		nn.SwiGLUForwardBE(be, a.H, a.G, a.U)
		y := make([]F, rows*H)
		matNT(be, y, a.H, l.Wdown, rows, H, l.Inter, false)
		nn.AddBiasT(y, l.Bdown, rows)
		for i, v := range y {
			x[i] += v
		}
	}
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
	if l.Inter > 0 {
		I := l.Inter
		nn.AddBiasBackward(gl.Bdown, dx, rows)
		matTN(be, gl.Wdown, dx, a.H, H, I, rows, true)
		dh := make([]F, rows*I)
		matNN(be, dh, dx, l.Wdown, rows, I, H, false)
		dg, du := make([]F, rows*I), make([]F, rows*I)
		nn.SwiGLUBackward(dg, du, dh, a.G, a.U)
		dh = nil
		nn.AddBiasBackward(gl.Bgate, dg, rows)
		nn.AddBiasBackward(gl.Bup, du, rows)
		matTN(be, gl.Wgate, dg, a.Xn2, I, H, rows, true)
		matTN(be, gl.Wup, du, a.Xn2, I, H, rows, true)
		dxn := make([]F, rows*H)
		matNN(be, dxn, dg, l.Wgate, rows, H, I, false)
		matNN(be, dxn, du, l.Wup, rows, H, I, true)
		nn.RMSNormBackward(dx, gl.MLPNorm, dxn, a.X1, l.MLPNorm, a.Rstd2, rows, H)
	}
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		nn.AddBiasBackward(gl.Bo, dx, rows)
		matTN(be, gl.Wo, dx, a.Att, H, qd, rows, true)
		datt := make([]F, rows*qd)
		matNN(be, datt, dx, l.Wo, rows, qd, H, false)
		dq, dk, dv := make([]F, rows*qd), make([]F, rows*kvd), make([]F, rows*kvd)
		starts := seqStarts(seqLens)
		nn.ParallelFor(len(seqLens), func(si int) {
			r0, T := starts[si], seqLens[si]
			var probs []F
			if a.Probs != nil {
				probs = a.Probs[si]
			}
			dqs, dks := dq[r0*qd:(r0+T)*qd], dk[r0*kvd:(r0+T)*kvd]
			nn.AttentionBackward(be, dqs, dks, dv[r0*kvd:(r0+T)*kvd], datt[r0*qd:(r0+T)*qd],
				a.Q[r0*qd:(r0+T)*qd], a.K[r0*kvd:(r0+T)*kvd], a.V[r0*kvd:(r0+T)*kvd], probs, T, l.Heads, l.KVHeads, d)
			nn.RopeBackwardT(rope, dqs, T, l.Heads, 0)
			nn.RopeBackwardT(rope, dks, T, l.KVHeads, 0)
		})
		datt = nil
		nn.AddBiasBackward(gl.Bq, dq, rows)
		nn.AddBiasBackward(gl.Bk, dk, rows)
		nn.AddBiasBackward(gl.Bv, dv, rows)
		matTN(be, gl.Wq, dq, a.Xn1, qd, H, rows, true)
		matTN(be, gl.Wk, dk, a.Xn1, kvd, H, rows, true)
		matTN(be, gl.Wv, dv, a.Xn1, kvd, H, rows, true)
		dxn := make([]F, rows*H)
		matNN(be, dxn, dq, l.Wq, rows, H, qd, false)
		matNN(be, dxn, dk, l.Wk, rows, H, kvd, true)
		matNN(be, dxn, dv, l.Wv, rows, H, kvd, true)
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
