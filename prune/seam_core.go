package prune

// TEMPORARY SEAM: stand-ins for model.Derive, model.SliceLayer and
// Layer.KVMap from branch core, until it lands. Replace by the real ones
// after `git merge core`.

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// derive returns a new Model sharing every tensor with m.
func derive(m *model.Model) *model.Model {
	return &model.Model{Cfg: m.Cfg, Embed: m.Embed, Layers: append([]model.Layer(nil), m.Layers...), Norm: m.Norm, LMHead: m.LMHead}
}

// kvOf is the K/V head query head h of layer l reads.
func kvOf(l *model.Layer, h int) int {
	return h / (l.Heads / l.KVHeads)
}

// sliceLayer keeps the given heads and neurons (nil: keep all, dense
// weights). This stand-in only handles head sets that keep whole K/V
// groups; arbitrary GQA subsets need core's KVMap.
func sliceLayer(c model.Config, l *model.Layer, keepHeads []int, wo []float32, keepNeurons []int, wdown []float32) (model.Layer, error) {
	out := *l
	H, d := c.Hidden, c.HeadDim
	if keepHeads != nil {
		var kv []int
		used := map[int]int{}
		for _, h := range keepHeads {
			used[kvOf(l, h)]++
		}
		for g := 0; g < l.KVHeads; g++ {
			if n := used[g]; n > 0 {
				if n != l.Heads/l.KVHeads {
					return out, fmt.Errorf("keeping part of a K/V group needs Layer.KVMap (branch core)")
				}
				kv = append(kv, g)
			}
		}
		qrows := expand(keepHeads, d)
		kvrows := expand(kv, d)
		out.Heads, out.KVHeads = len(keepHeads), len(kv)
		out.Wq, out.Bq = gatherRows(l.Wq, H, qrows), gatherVec(l.Bq, qrows)
		out.Wk, out.Bk = gatherRows(l.Wk, H, kvrows), gatherVec(l.Bk, kvrows)
		out.Wv, out.Bv = gatherRows(l.Wv, H, kvrows), gatherVec(l.Bv, kvrows)
		out.Wo = wo
		if len(keepHeads) == 0 {
			out.Wq, out.Wk, out.Wv, out.Wo, out.Bq, out.Bk, out.Bv, out.Bo = nil, nil, nil, nil, nil, nil, nil, nil
		}
	}
	if keepNeurons != nil {
		out.Inter = len(keepNeurons)
		out.Wgate, out.Bgate = gatherRows(l.Wgate, H, keepNeurons), gatherVec(l.Bgate, keepNeurons)
		out.Wup, out.Bup = gatherRows(l.Wup, H, keepNeurons), gatherVec(l.Bup, keepNeurons)
		out.Wdown = wdown
		if len(keepNeurons) == 0 {
			out.Wgate, out.Wup, out.Wdown, out.Bgate, out.Bup, out.Bdown = nil, nil, nil, nil, nil, nil
		}
	}
	return out, nil
}

// Activation kinds the sink receives (core's model.OProjInput and
// model.DownProjInput).
const (
	oprojInput = iota
	downInput
)

// layerForward applies dense layer li of m to the residual stream x
// [Σlens × hidden] of independent sequences (each from position 0), in
// place, and hands the inputs of o_proj and down_proj to sink. A copy of
// model.layerForward without cache or segments; core's shared layer
// forward with its ActivationSink replaces it.
func layerForward(be backend.Backend, m *model.Model, li int, x []float32, lens []int, sink func(kind int, a []float32, rows, cols int)) {
	c := m.Cfg
	l := &m.Layers[li]
	H, d := c.Hidden, c.HeadDim
	rows, maxLen := 0, 0
	starts := make([]int, len(lens))
	for i, n := range lens {
		starts[i] = rows
		rows += n
		maxLen = max(maxLen, n)
	}
	rope := m.Rope(maxLen)
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
		nn.ParallelFor(len(lens), func(si int) {
			r0, T := starts[si], lens[si]
			rope.Forward(q[r0*qd:(r0+T)*qd], T, l.Heads, 0)
			rope.Forward(k[r0*kvd:(r0+T)*kvd], T, l.KVHeads, 0)
			nn.AttentionForwardGEMM(be, att[r0*qd:(r0+T)*qd], nil, q[r0*qd:(r0+T)*qd], k[r0*kvd:(r0+T)*kvd], v[r0*kvd:(r0+T)*kvd], T, 0, l.Heads, l.KVHeads, d)
		})
		sink(oprojInput, att, rows, qd)
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
		sink(downInput, g, rows, l.Inter)
		be.MatMulNT(xn, g, l.Wdown, rows, H, l.Inter, false)
		nn.AddBias(xn, l.Bdown, rows)
		for i, v := range xn {
			x[i] += v
		}
	}
}
