package shear

import (
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// Gates holds one value per gated unit, for a forward pass (z) or for its
// gradient. Head and Neuron are per layer, row-major: Head[l*heads+h],
// Neuron[l*inter+i].
type Gates[F nn.Float] struct {
	Layer, Head, Neuron, Hidden []F
}

// NewGates returns gates of the model shape s, all set to v.
func NewGates[F nn.Float](s Shape, v F) *Gates[F] {
	g := &Gates[F]{make([]F, s.Layers), make([]F, s.Layers*s.Heads), make([]F, s.Layers*s.Inter), make([]F, s.Hidden)}
	for _, t := range g.all() {
		for i := range t {
			t[i] = v
		}
	}
	return g
}

func (g *Gates[F]) all() [][]F { return [][]F{g.Layer, g.Head, g.Neuron, g.Hidden} }

// The masked model (LLM-Shearing's composer_llama.py), per layer l with
// layer gate zl, head gates zq, neuron gates zn and the shared hidden gates
// zh (⊙ broadcasts over rows):
//
//	x0  = embed[ids] ⊙ zh
//	x  += (W_o·(att ⊙ zq) + b_o) ⊙ zl·zh         attention
//	x  += (W_down·(silu(g)·u ⊙ zn) + b_down) ⊙ zl·zh   MLP
//	logits = W_head·norm(x)
//
// where att is the attention output of each query head before o_proj
// (head h's d columns scaled by zq[h]) and every RMSNorm is the masked one:
// y = w ⊙ x·rstd ⊙ zh with rstd = (Σ x²/k + eps)^−½ over the k hidden units
// whose gate is not zero (x is zero on the others), so that the shrunk
// model's RMSNorm over the kept units computes the same thing.

// layerActs are one layer's saved activations.
type layerActs[F nn.Float] struct {
	X0, Rstd1, Xn1 []F // layer input, attention-norm 1/rms and output
	Q, K, V, Att   []F // after RoPE; attention output before the head gates
	Y1             []F // o_proj output (+bias) before the layer/hidden gates
	X1, Rstd2, Xn2 []F
	G, U, H        []F // gate, up, silu(G)·U before the neuron gates
	Y2             []F
}

// graph runs the masked model in train mode on a batch and back-propagates
// into the weights and the gates.
type graph[F nn.Float] struct {
	be     backend.Backend
	w      *train.Weights[F]
	z      *Gates[F]
	kept   int // hidden units with a non-zero gate
	lens   []int
	ids    []int
	rows   int
	emb    []F // embedding rows before the hidden gates
	acts   []layerActs[F]
	xFinal []F
	rstdF  []F
	xnF    []F
}

func (g *graph[F]) forward(seqs [][]int) []F {
	c := g.w.Cfg
	H := c.Hidden
	g.lens, g.ids = g.lens[:0], g.ids[:0]
	maxLen := 0
	for _, s := range seqs {
		g.lens = append(g.lens, len(s))
		g.ids = append(g.ids, s...)
		maxLen = max(maxLen, len(s))
	}
	g.rows = len(g.ids)
	g.kept = 0
	for _, v := range g.z.Hidden {
		if v != 0 {
			g.kept++
		}
	}
	rope := g.w.Rope(maxLen)
	g.emb = make([]F, g.rows*H)
	nn.EmbeddingForwardT(g.emb, g.w.Embed, g.ids, H)
	x := make([]F, g.rows*H)
	for i, v := range g.emb {
		x[i] = v * g.z.Hidden[i%H]
	}
	g.acts = make([]layerActs[F], len(g.w.Layers))
	for li := range g.w.Layers {
		g.layerForward(rope, li, x)
	}
	g.xFinal = x
	g.rstdF, g.xnF = make([]F, g.rows), make([]F, g.rows*H)
	maskedNorm(g.xnF, g.rstdF, x, g.w.Norm, g.z.Hidden, g.rows, g.kept, c.RMSEps)
	logits := make([]F, g.rows*c.Vocab)
	nn.MatNT(g.be, logits, g.xnF, g.w.LMHead, g.rows, c.Vocab, H, false)
	return logits
}

// scaleCols returns a ⊙ m with a [rows × len(m)·width] and m repeated over
// width consecutive columns (width d for heads, 1 for neurons).
func scaleCols[F nn.Float](a, m []F, width int) []F {
	out := make([]F, len(a))
	n := len(m) * width
	for i, v := range a {
		out[i] = v * m[(i%n)/width]
	}
	return out
}

func (g *graph[F]) layerForward(rope *nn.Rope, li int, x []F) {
	c := g.w.Cfg
	l, a := &g.w.Layers[li], &g.acts[li]
	H, d, rows, eps := c.Hidden, c.HeadDim, g.rows, c.RMSEps
	zl, zh := g.z.Layer[li], g.z.Hidden
	addGated := func(y []F) {
		for i, v := range y {
			x[i] += v * zl * zh[i%H]
		}
	}
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		a.X0 = append([]F(nil), x...)
		a.Rstd1, a.Xn1 = make([]F, rows), make([]F, rows*H)
		maskedNorm(a.Xn1, a.Rstd1, x, l.AttnNorm, zh, rows, g.kept, eps)
		a.Q, a.K, a.V = make([]F, rows*qd), make([]F, rows*kvd), make([]F, rows*kvd)
		nn.MatNT(g.be, a.Q, a.Xn1, l.Wq, rows, qd, H, false)
		nn.MatNT(g.be, a.K, a.Xn1, l.Wk, rows, kvd, H, false)
		nn.MatNT(g.be, a.V, a.Xn1, l.Wv, rows, kvd, H, false)
		nn.AddBiasT(a.Q, l.Bq, rows)
		nn.AddBiasT(a.K, l.Bk, rows)
		nn.AddBiasT(a.V, l.Bv, rows)
		a.Att = make([]F, rows*qd)
		starts := seqStarts(g.lens)
		nn.ParallelFor(len(g.lens), func(si int) {
			r0, T := starts[si], g.lens[si]
			qs, ks, vs := a.Q[r0*qd:(r0+T)*qd], a.K[r0*kvd:(r0+T)*kvd], a.V[r0*kvd:(r0+T)*kvd]
			nn.RopeForwardT(rope, qs, T, l.Heads, 0)
			nn.RopeForwardT(rope, ks, T, l.KVHeads, 0)
			nn.AttentionForwardT(g.be, a.Att[r0*qd:(r0+T)*qd], nil, qs, ks, vs, T, 0, l.Heads, l.KVHeads, l.KVMap, d)
		})
		attm := scaleCols(a.Att, g.z.Head[li*l.Heads:(li+1)*l.Heads], d)
		a.Y1 = make([]F, rows*H)
		nn.MatNT(g.be, a.Y1, attm, l.Wo, rows, H, qd, false)
		nn.AddBiasT(a.Y1, l.Bo, rows)
		addGated(a.Y1)
	}
	if l.Inter > 0 {
		I := l.Inter
		a.X1 = append([]F(nil), x...)
		a.Rstd2, a.Xn2 = make([]F, rows), make([]F, rows*H)
		maskedNorm(a.Xn2, a.Rstd2, x, l.MLPNorm, zh, rows, g.kept, eps)
		a.G, a.U, a.H = make([]F, rows*I), make([]F, rows*I), make([]F, rows*I)
		nn.MatNT(g.be, a.G, a.Xn2, l.Wgate, rows, I, H, false)
		nn.MatNT(g.be, a.U, a.Xn2, l.Wup, rows, I, H, false)
		nn.AddBiasT(a.G, l.Bgate, rows)
		nn.AddBiasT(a.U, l.Bup, rows)
		nn.SwiGLUForwardBE(g.be, a.H, a.G, a.U)
		hm := scaleCols(a.H, g.z.Neuron[li*I:(li+1)*I], 1)
		a.Y2 = make([]F, rows*H)
		nn.MatNT(g.be, a.Y2, hm, l.Wdown, rows, H, I, false)
		nn.AddBiasT(a.Y2, l.Bdown, rows)
		addGated(a.Y2)
	}
}

// backward back-propagates dlogits, accumulating weight gradients into gw
// and gate gradients into gz.
func (g *graph[F]) backward(dlogits []F, gw *train.Weights[F], gz *Gates[F]) {
	c := g.w.Cfg
	H, rows := c.Hidden, g.rows
	nn.MatTN(g.be, gw.LMHead, dlogits, g.xnF, c.Vocab, H, rows, true)
	dxn := make([]F, rows*H)
	nn.MatNN(g.be, dxn, dlogits, g.w.LMHead, rows, H, c.Vocab, false)
	dx := make([]F, rows*H)
	maskedNormBackward(dx, gw.Norm, gz.Hidden, dxn, g.xFinal, g.w.Norm, g.z.Hidden, g.rstdF, rows, g.kept)
	maxLen := 0
	for _, T := range g.lens {
		maxLen = max(maxLen, T)
	}
	rope := g.w.Rope(maxLen)
	for li := len(g.w.Layers) - 1; li >= 0; li-- {
		g.layerBackward(rope, li, dx, &gw.Layers[li], gz)
		g.acts[li] = layerActs[F]{}
	}
	// x0 = emb ⊙ zh.
	dh := make([]float64, H)
	de := make([]F, rows*H)
	for i, v := range dx {
		de[i] = v * g.z.Hidden[i%H]
		dh[i%H] += float64(v) * float64(g.emb[i])
	}
	addTo(gz.Hidden, dh)
	nn.EmbeddingBackward(gw.Embed, de, g.ids, H)
	g.acts, g.xFinal, g.xnF, g.rstdF, g.emb = nil, nil, nil, nil, nil
}

// gatedOutBackward handles x += y ⊙ zl·zh: it returns dy and accumulates
// the gradients of zl and zh.
func (g *graph[F]) gatedOutBackward(li int, dx, y []F, gz *Gates[F]) []F {
	H := g.w.Cfg.Hidden
	zl, zh := g.z.Layer[li], g.z.Hidden
	dy := make([]F, len(dx))
	dh := make([]float64, H)
	var dl float64
	for i, v := range dx {
		j := i % H
		dy[i] = v * zl * zh[j]
		p := float64(v) * float64(y[i])
		dh[j] += p * float64(zl)
		dl += p * float64(zh[j])
	}
	addTo(gz.Hidden, dh)
	gz.Layer[li] += F(dl)
	return dy
}

// unitMaskBackward handles am = a ⊙ z (z repeated over width columns): it
// returns da and accumulates the gradient of z into gzu.
func unitMaskBackward[F nn.Float](dam, a, z, gzu []F, width int) []F {
	n := len(z) * width
	dm := make([]float64, len(z))
	for i, v := range dam {
		dm[(i%n)/width] += float64(v) * float64(a[i])
	}
	addTo(gzu, dm)
	return scaleCols(dam, z, width)
}

func (g *graph[F]) layerBackward(rope *nn.Rope, li int, dx []F, gl *train.LayerW[F], gz *Gates[F]) {
	c := g.w.Cfg
	l, a := &g.w.Layers[li], &g.acts[li]
	H, d, rows := c.Hidden, c.HeadDim, g.rows
	zh := g.z.Hidden
	if l.Inter > 0 {
		I := l.Inter
		zn, gzn := g.z.Neuron[li*I:(li+1)*I], gz.Neuron[li*I:(li+1)*I]
		dy := g.gatedOutBackward(li, dx, a.Y2, gz)
		nn.AddBiasBackward(gl.Bdown, dy, rows)
		nn.MatTN(g.be, gl.Wdown, dy, scaleCols(a.H, zn, 1), H, I, rows, true)
		dhm := make([]F, rows*I)
		nn.MatNN(g.be, dhm, dy, l.Wdown, rows, I, H, false)
		dh := unitMaskBackward(dhm, a.H, zn, gzn, 1)
		dg, du := make([]F, rows*I), make([]F, rows*I)
		nn.SwiGLUBackward(dg, du, dh, a.G, a.U)
		nn.AddBiasBackward(gl.Bgate, dg, rows)
		nn.AddBiasBackward(gl.Bup, du, rows)
		nn.MatTN(g.be, gl.Wgate, dg, a.Xn2, I, H, rows, true)
		nn.MatTN(g.be, gl.Wup, du, a.Xn2, I, H, rows, true)
		dxn := make([]F, rows*H)
		nn.MatNN(g.be, dxn, dg, l.Wgate, rows, H, I, false)
		nn.MatNN(g.be, dxn, du, l.Wup, rows, H, I, true)
		maskedNormBackward(dx, gl.MLPNorm, gz.Hidden, dxn, a.X1, l.MLPNorm, zh, a.Rstd2, rows, g.kept)
	}
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		zq, gzq := g.z.Head[li*l.Heads:(li+1)*l.Heads], gz.Head[li*l.Heads:(li+1)*l.Heads]
		dy := g.gatedOutBackward(li, dx, a.Y1, gz)
		nn.AddBiasBackward(gl.Bo, dy, rows)
		nn.MatTN(g.be, gl.Wo, dy, scaleCols(a.Att, zq, d), H, qd, rows, true)
		dattm := make([]F, rows*qd)
		nn.MatNN(g.be, dattm, dy, l.Wo, rows, qd, H, false)
		datt := unitMaskBackward(dattm, a.Att, zq, gzq, d)
		dq, dk, dv := make([]F, rows*qd), make([]F, rows*kvd), make([]F, rows*kvd)
		starts := seqStarts(g.lens)
		nn.ParallelFor(len(g.lens), func(si int) {
			r0, T := starts[si], g.lens[si]
			dqs, dks := dq[r0*qd:(r0+T)*qd], dk[r0*kvd:(r0+T)*kvd]
			nn.AttentionBackward(g.be, dqs, dks, dv[r0*kvd:(r0+T)*kvd], datt[r0*qd:(r0+T)*qd],
				a.Q[r0*qd:(r0+T)*qd], a.K[r0*kvd:(r0+T)*kvd], a.V[r0*kvd:(r0+T)*kvd], nil, T, l.Heads, l.KVHeads, l.KVMap, d)
			nn.RopeBackwardT(rope, dqs, T, l.Heads, 0)
			nn.RopeBackwardT(rope, dks, T, l.KVHeads, 0)
		})
		nn.AddBiasBackward(gl.Bq, dq, rows)
		nn.AddBiasBackward(gl.Bk, dk, rows)
		nn.AddBiasBackward(gl.Bv, dv, rows)
		nn.MatTN(g.be, gl.Wq, dq, a.Xn1, qd, H, rows, true)
		nn.MatTN(g.be, gl.Wk, dk, a.Xn1, kvd, H, rows, true)
		nn.MatTN(g.be, gl.Wv, dv, a.Xn1, kvd, H, rows, true)
		dxn := make([]F, rows*H)
		nn.MatNN(g.be, dxn, dq, l.Wq, rows, H, qd, false)
		nn.MatNN(g.be, dxn, dk, l.Wk, rows, H, kvd, true)
		nn.MatNN(g.be, dxn, dv, l.Wv, rows, H, kvd, true)
		maskedNormBackward(dx, gl.AttnNorm, gz.Hidden, dxn, a.X0, l.AttnNorm, zh, a.Rstd1, rows, g.kept)
	}
}

// maskedNorm is LLM-Shearing's LlamaRMSNorm with hidden_z:
// y = w ⊙ x·rstd ⊙ z, rstd = (Σ x²/kept + eps)^−½.
func maskedNorm[F nn.Float](out, rstd, x, w, z []F, rows, kept int, eps float64) {
	H := len(w)
	nn.ParallelFor(rows, func(r int) {
		xr := x[r*H : r*H+H]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		s := F(1 / math.Sqrt(ss/float64(max(kept, 1))+eps))
		rstd[r] = s
		or := out[r*H : r*H+H]
		for i, v := range xr {
			or[i] = w[i] * (v * s) * z[i]
		}
	})
}

// maskedNormBackward accumulates dx, dw and dz for maskedNorm. With s the
// row's rstd and c = Σ_i dy_i·w_i·z_i·x_i:
//
//	dx_j += s·w_j·z_j·dy_j − s³·c·x_j/kept
//	dw_j += Σ_r dy_j·x_j·s·z_j,  dz_j += Σ_r dy_j·x_j·s·w_j
func maskedNormBackward[F nn.Float](dx, dw, dz, dout, x, w, z, rstd []F, rows, kept int) {
	H := len(w)
	nn.ParallelFor(rows, func(r int) {
		xr, dy, dxr := x[r*H:r*H+H], dout[r*H:r*H+H], dx[r*H:r*H+H]
		s := float64(rstd[r])
		var c float64
		for i, v := range xr {
			c += float64(dy[i]) * float64(w[i]) * float64(z[i]) * float64(v)
		}
		fs, coef := F(s), F(s*s*s*c/float64(max(kept, 1)))
		for j, v := range xr {
			dxr[j] += fs*w[j]*z[j]*dy[j] - coef*v
		}
	})
	acc := make([]float64, H) // Σ_r dy·x·s, in row order (deterministic)
	for r := 0; r < rows; r++ {
		s := float64(rstd[r])
		xr, dy := x[r*H:r*H+H], dout[r*H:r*H+H]
		for i, v := range xr {
			acc[i] += float64(dy[i]) * float64(v) * s
		}
	}
	for i, v := range acc {
		dw[i] += F(v * float64(z[i]))
		dz[i] += F(v * float64(w[i]))
	}
}

func addTo[F nn.Float](dst []F, src []float64) {
	for i, v := range src {
		dst[i] += F(v)
	}
}

func seqStarts(lens []int) []int {
	starts := make([]int, len(lens))
	for i := 1; i < len(lens); i++ {
		starts[i] = starts[i-1] + lens[i-1]
	}
	return starts
}
