package model_test

import (
	"math"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
)

type capture struct {
	calls []model.ActKind
	layer []int
	x     [][]float32
	shape [][2]int
}

func (c *capture) Activation(layer int, kind model.ActKind, x []float32, rows, cols int) {
	c.calls = append(c.calls, kind)
	c.layer = append(c.layer, layer)
	c.x = append(c.x, slices.Clone(x))
	c.shape = append(c.shape, [2]int{rows, cols})
}

// Embedding + RunLayer per layer + FinalNorm is Hidden, bitwise; the sink
// sees each layer's o_proj and down_proj inputs, checked in float64: the
// layer's output must be its input plus o_proj(captured attention) and then
// down_proj(captured SwiGLU), and the captured SwiGLU activation must be
// silu(gate)·up of the normed mid-layer residual.
func TestRunLayerAndSink(t *testing.T) {
	be, _ := backend.Get("")
	m := randomModel(randCfg{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 3, Bias: true, MLPBias: true, KeepHeads: []int{0, 1, 2, 5, 7}}, true, 9)
	seqs := [][]int{{1, 2, 3, 4, 5, 6}, {7, 8, 9}}
	lens := model.SeqLens(seqs)
	want, rows := m.Hidden(be, seqs, nil)
	var full capture
	gotSink, _ := m.HiddenSink(be, seqs, &full)
	if !slices.Equal(gotSink, want) {
		t.Fatal("HiddenSink differs from Hidden")
	}
	x := m.EmbedSeqs(seqs)
	var all capture
	c, H := m.Cfg, m.Cfg.Hidden
	for li := range m.Layers {
		l := &m.Layers[li]
		in := slices.Clone(x)
		var cap capture
		if err := m.RunLayer(be, li, x, lens, &cap); err != nil {
			t.Fatal(err)
		}
		all.calls = append(all.calls, cap.calls...)
		all.x = append(all.x, cap.x...)
		var kinds []model.ActKind
		if l.Heads > 0 {
			kinds = append(kinds, model.OProjInput)
		}
		if l.Inter > 0 {
			kinds = append(kinds, model.DownProjInput)
		}
		if !slices.Equal(cap.calls, kinds) {
			t.Fatalf("layer %d: sink got %v, want %v", li, cap.calls, kinds)
		}
		k := 0
		mid := make([]float64, len(in))
		for i, v := range in {
			mid[i] = float64(v)
		}
		if l.Heads > 0 {
			att := cap.x[k]
			qd := l.Heads * c.HeadDim
			if cap.shape[k] != [2]int{rows, qd} || cap.layer[k] != li {
				t.Fatalf("layer %d: o_proj input shape %v layer %d", li, cap.shape[k], cap.layer[k])
			}
			for r := 0; r < rows; r++ {
				for o := 0; o < H; o++ {
					s := float64(l.Bo[o])
					for j := 0; j < qd; j++ {
						s += float64(att[r*qd+j]) * float64(l.Wo[o*qd+j])
					}
					mid[r*H+o] += s
				}
			}
			k++
		}
		out := slices.Clone(mid)
		if l.Inter > 0 {
			h := cap.x[k]
			I := l.Inter
			if cap.shape[k] != [2]int{rows, I} {
				t.Fatalf("layer %d: down_proj input shape %v", li, cap.shape[k])
			}
			for r := 0; r < rows; r++ {
				var ss float64
				for i := 0; i < H; i++ {
					ss += mid[r*H+i] * mid[r*H+i]
				}
				rs := 1 / math.Sqrt(ss/float64(H)+c.RMSEps)
				for j := 0; j < I; j++ {
					g, u := float64(l.Bgate[j]), float64(l.Bup[j])
					for i := 0; i < H; i++ {
						xn := mid[r*H+i] * rs * float64(l.MLPNorm[i])
						g += xn * float64(l.Wgate[j*H+i])
						u += xn * float64(l.Wup[j*H+i])
					}
					w := g / (1 + math.Exp(-g)) * u
					if math.Abs(float64(h[r*I+j])-w) > 1e-4*(1+math.Abs(w)) {
						t.Fatalf("layer %d row %d neuron %d: captured %g, want %g", li, r, j, h[r*I+j], w)
					}
				}
				for o := 0; o < H; o++ {
					s := float64(l.Bdown[o])
					for j := 0; j < I; j++ {
						s += float64(h[r*I+j]) * float64(l.Wdown[o*I+j])
					}
					out[r*H+o] += s
				}
			}
		}
		for i := range out {
			if math.Abs(float64(x[i])-out[i]) > 1e-4*(1+math.Abs(out[i])) {
				t.Fatalf("layer %d value %d: output %g, input + captured sublayers %g", li, i, x[i], out[i])
			}
		}
	}
	m.FinalNorm(x, rows)
	if !slices.Equal(x, want) {
		t.Fatal("embedding + RunLayer + FinalNorm differs from Hidden")
	}
	if !slices.Equal(all.calls, full.calls) {
		t.Fatalf("sink calls layer by layer %v, in one pass %v", all.calls, full.calls)
	}
	for i := range all.x {
		if !slices.Equal(all.x[i], full.x[i]) {
			t.Fatalf("captured activation %d differs between RunLayer and HiddenSink", i)
		}
	}
	if err := m.RunLayer(be, 3, x, lens, nil); err == nil {
		t.Fatal("layer 3 of 3 accepted")
	}
	if err := m.RunLayer(be, 0, x[:5], lens, nil); err == nil {
		t.Fatal("short hidden states accepted")
	}
}
