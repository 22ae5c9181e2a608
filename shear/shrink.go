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
// GQA: a K/V head is kept when at least one of its query heads survives.
// TODO(core): with model.Layer.KVMap (core branch) any grouping is
// representable; until it lands, a layer whose surviving query heads are
// unevenly spread over their K/V heads gets copies of those K/V heads so
// that every copy serves the same number of query heads (the gcd of the
// counts); the function is unchanged, the K/V matrices are larger.
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
	for li := 0; li < base.Layers; li++ {
		zl := z.Layer[li]
		if zl == 0 {
			continue
		}
		l := &m.Layers[li]
		nl := model.Layer{AttnNorm: vec(l.AttnNorm, zh), MLPNorm: vec(l.MLPNorm, zh)}
		outScale := make([]float64, h) // zl·zh of o_proj / down_proj rows
		for i := range outScale {
			outScale[i] = zl * zh[i]
		}
		// rowsOut keeps the hidden rows of a [H × n] matrix, keeping and
		// scaling its columns by groups of width (heads: d, neurons: 1).
		rowsOut := func(w []float32, n int, keep []int, zu []float64, width int) []float32 {
			o := make([]float32, h*len(keep)*width)
			for i, j := range kh {
				for ui, u := range keep {
					for e := 0; e < width; e++ {
						o[(i*len(keep)+ui)*width+e] = float32(float64(w[j*n+u*width+e]) * outScale[i] * zu[u])
					}
				}
			}
			return o
		}
		biasOut := func(b []float32) []float32 { return vec(b, outScale) }
		zq := z.Head[li*base.Heads : (li+1)*base.Heads]
		if heads := nz(zq); len(heads) > 0 {
			kvIdx, kvHeads := kvLayout(heads, base.Heads/base.KVHeads)
			nl.Heads, nl.KVHeads = len(heads), kvHeads
			rowsIn := func(w, b []float32, units []int) ([]float32, []float32) {
				var ow, ob []float32
				for _, u := range units {
					ow = append(ow, cols(w[u*d*H:(u+1)*d*H], d, nil, nil)...)
					if b != nil {
						ob = append(ob, b[u*d:(u+1)*d]...)
					}
				}
				return ow, ob
			}
			nl.Wq, nl.Bq = rowsIn(l.Wq, l.Bq, heads)
			nl.Wk, nl.Bk = rowsIn(l.Wk, l.Bk, kvIdx)
			nl.Wv, nl.Bv = rowsIn(l.Wv, l.Bv, kvIdx)
			nl.Wo = rowsOut(l.Wo, base.Heads*d, heads, zq, d)
			nl.Bo = biasOut(l.Bo)
		}
		zn := z.Neuron[li*base.Inter : (li+1)*base.Inter]
		if neurons := nz(zn); len(neurons) > 0 {
			nl.Inter = len(neurons)
			gateUp := func(w, b []float32) ([]float32, []float32) {
				var ow, ob []float32
				for _, u := range neurons {
					ow = append(ow, cols(w[u*H:(u+1)*H], 1, nil, nil)...)
					if b != nil {
						ob = append(ob, b[u])
					}
				}
				return ow, ob
			}
			nl.Wgate, nl.Bgate = gateUp(l.Wgate, l.Bgate)
			nl.Wup, nl.Bup = gateUp(l.Wup, l.Bup)
			nl.Wdown = rowsOut(l.Wdown, base.Inter, neurons, zn, 1)
			nl.Bdown = biasOut(l.Bdown)
		}
		out.Layers = append(out.Layers, nl)
	}
	if len(out.Layers) == 0 {
		return nil, fmt.Errorf("shrink: every layer is removed")
	}
	out.Cfg.Layers = len(out.Layers)
	first := out.Layers[0]
	out.Cfg.Heads, out.Cfg.KVHeads, out.Cfg.Intermediate = first.Heads, first.KVHeads, first.Inter
	if first.Heads == 0 { // a config needs positive heads; widths say the truth
		out.Cfg.Heads, out.Cfg.KVHeads = 1, 1
	}
	if err := out.Validate("shrunk model"); err != nil {
		return nil, err
	}
	return out, nil
}

// kvLayout returns, for surviving query heads (ascending) of a layer whose
// query head q reads K/V head q/group, the K/V heads to keep (in order,
// repeated when copies are needed) and their number. Consecutive runs of
// k = gcd(counts) query heads then read consecutive K/V entries, which is
// the standard grouping.
func kvLayout(heads []int, group int) ([]int, int) {
	var kv, counts []int
	for _, q := range heads {
		j := q / group
		if len(kv) == 0 || kv[len(kv)-1] != j {
			kv, counts = append(kv, j), append(counts, 0)
		}
		counts[len(counts)-1]++
	}
	k := 0
	for _, c := range counts {
		k = gcd(k, c)
	}
	var out []int
	for i, j := range kv {
		for range counts[i] / k {
			out = append(out, j)
		}
	}
	return out, len(out)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
