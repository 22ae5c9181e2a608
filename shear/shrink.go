package shear

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/model"
)

// Shrink builds the physically smaller model that computes what the masked
// dense model m computes with the gates z (deterministic gates: zero means
// removed): whole layers, query heads, MLP neurons and hidden units with a
// zero gate are removed; the surviving units' gate values are folded into
// the weights:
//
//   - hidden: embedding columns, both norms' weights and the rows of o_proj
//     and down_proj (with their biases) are scaled by zh; every matrix loses
//     the removed hidden columns or rows. With an untied head the final
//     norm's weight is scaled too; with a tied one the shared matrix already
//     carries zh from the embedding, so the final norm is left unscaled and
//     the logits are unchanged. (LLM-Shearing scales both the final norm and
//     lm_head, which applies zh twice to the logits; its own comment calls
//     it a bug. We fold it once, so the shrunk model equals the masked one.)
//   - layer: o_proj and down_proj rows (and biases) are scaled by zl;
//   - head: o_proj columns of head h are scaled by zq[h] (LLM-Shearing
//     scales v_proj rows instead, which is the same for MHA; with GQA a
//     K/V head is shared, so the scale goes on the query head's o_proj
//     columns);
//   - neuron: down_proj columns are scaled by zn (LLM-Shearing scales
//     up_proj rows; same product).
//
// Heads and neurons are then removed by model.SliceLayer: with GQA a K/V
// head is kept while one of its query heads survives, and ragged groups get
// a KVMap.
func Shrink(m *model.Model, z *Gates[float64]) (*model.Model, error) {
	base, err := BaseShape(m)
	if err != nil {
		return nil, err
	}
	if len(z.Layer) != base.Layers || len(z.Head) != base.Layers*base.Heads || len(z.Neuron) != base.Layers*base.Inter || len(z.Hidden) != base.Hidden {
		return nil, fmt.Errorf("shrink: gates do not match the model's shape %v", base)
	}
	c := m.Cfg
	d, H := c.HeadDim, c.Hidden
	nz := func(v []float64) []int {
		var k []int
		for i, x := range v {
			if x != 0 {
				k = append(k, i)
			}
		}
		return k
	}
	kh := nz(z.Hidden)
	h := len(kh)
	if h == 0 {
		return nil, fmt.Errorf("shrink: every hidden unit is removed")
	}
	zh := make([]float64, h)
	for i, j := range kh {
		zh[i] = z.Hidden[j]
	}
	// cols keeps the hidden columns of a [rows × H] matrix, scaling each
	// row r by rs(r) and each column by cs (either may be nil).
	cols := func(w []float32, rows int, rs func(int) float64, cs []float64) []float32 {
		out := make([]float32, rows*h)
		for r := 0; r < rows; r++ {
			f := 1.0
			if rs != nil {
				f = rs(r)
			}
			for i, j := range kh {
				v := float64(w[r*H+j]) * f
				if cs != nil {
					v *= cs[i]
				}
				out[r*h+i] = float32(v)
			}
		}
		return out
	}
	vec := func(w []float32, scale []float64) []float32 { // keep hidden entries
		if w == nil {
			return nil
		}
		out := make([]float32, h)
		for i, j := range kh {
			v := float64(w[j])
			if scale != nil {
				v *= scale[i]
			}
			out[i] = float32(v)
		}
		return out
	}
	out := &model.Model{Cfg: c}
	out.Cfg.Hidden = h
	out.Embed = cols(m.Embed, c.Vocab, nil, zh)
	if c.Tied {
		out.LMHead = out.Embed
		out.Norm = vec(m.Norm, nil)
	} else {
		out.LMHead = cols(m.LMHead, c.Vocab, nil, nil)
		out.Norm = vec(m.Norm, zh)
	}
	hc := out.Cfg // the config at the new hidden size, for SliceLayer
	for li := 0; li < base.Layers; li++ {
		zl := z.Layer[li]
		if zl == 0 {
			continue
		}
		l := &m.Layers[li]
		outScale := make([]float64, h) // zl·zh on the rows of o_proj and down_proj
		for i := range outScale {
			outScale[i] = zl * zh[i]
		}
		// outRows keeps the hidden rows of an [H × n] output matrix, scaled
		// by zl·zh, with column u·width+e scaled by zu[u].
		outRows := func(w []float32, n int, zu []float64, width int) []float32 {
			o := make([]float32, h*n)
			for i, j := range kh {
				for c := 0; c < n; c++ {
					o[i*n+c] = float32(float64(w[j*n+c]) * outScale[i] * zu[c/width])
				}
			}
			return o
		}
		zq := z.Head[li*base.Heads : (li+1)*base.Heads]
		zn := z.Neuron[li*base.Inter : (li+1)*base.Inter]
		// The layer at the new hidden size with every head and neuron and
		// the gates folded in; SliceLayer then drops the removed units.
		full := model.Layer{Heads: l.Heads, KVHeads: l.KVHeads, KVMap: l.KVMap, Inter: l.Inter,
			AttnNorm: vec(l.AttnNorm, zh), MLPNorm: vec(l.MLPNorm, zh),
			Wq: cols(l.Wq, l.Heads*d, nil, nil), Wk: cols(l.Wk, l.KVHeads*d, nil, nil), Wv: cols(l.Wv, l.KVHeads*d, nil, nil),
			Bq: l.Bq, Bk: l.Bk, Bv: l.Bv, Wo: outRows(l.Wo, l.Heads*d, zq, d), Bo: vec(l.Bo, outScale),
			Wgate: cols(l.Wgate, l.Inter, nil, nil), Wup: cols(l.Wup, l.Inter, nil, nil), Bgate: l.Bgate, Bup: l.Bup,
			Wdown: outRows(l.Wdown, l.Inter, zn, 1), Bdown: vec(l.Bdown, outScale)}
		nl, err := model.SliceLayer(hc, &full, nz(zq), nil, nz(zn), nil)
		if err != nil {
			return nil, fmt.Errorf("shrink: layer %d: %w", li, err)
		}
		out.Layers = append(out.Layers, nl)
	}
	if len(out.Layers) == 0 {
		return nil, fmt.Errorf("shrink: every layer is removed")
	}
	out.Cfg.Layers = len(out.Layers)
	first := out.Layers[0]
	// The config's nominal widths are the first layer's; the per-layer
	// widths and KV maps of config.json carry the rest.
	out.Cfg.Heads, out.Cfg.KVHeads, out.Cfg.Intermediate = first.Heads, first.KVHeads, first.Inter
	if first.Heads == 0 || first.Heads%first.KVHeads != 0 {
		out.Cfg.Heads, out.Cfg.KVHeads = max(first.Heads, 1), max(first.Heads, 1)
	}
	if err := out.Validate("shrunk model"); err != nil {
		return nil, err
	}
	return out, nil
}
