package model_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

type randCfg = modeltest.Cfg

func randomModel(rc randCfg, pruned bool, seed uint64) *model.Model {
	return modeltest.Random(rc, pruned, seed)
}

// refForward is an independent float64 Llama forward pass for one sequence,
// written token by token with RoPE angles computed directly in float64.
func refForward(m *model.Model, toks []int) [][]float64 {
	c := m.Cfg
	H, d := c.Hidden, c.HeadDim
	f := func(s []float32, i int) float64 { return float64(s[i]) }
	rms := func(x []float64, w []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(len(x))+c.RMSEps)
		o := make([]float64, len(x))
		for i := range x {
			o[i] = x[i] * r * f(w, i)
		}
		return o
	}
	lin := func(x []float64, w []float32, b []float32, out int) []float64 {
		o := make([]float64, out)
		for j := 0; j < out; j++ {
			s := 0.0
			for i := range x {
				s += x[i] * f(w, j*len(x)+i)
			}
			if b != nil {
				s += f(b, j)
			}
			o[j] = s
		}
		return o
	}
	invFreq := func(i int) float64 {
		fr := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(d))
		if sc := c.RopeScaling; sc != nil {
			old := float64(sc.OriginalMaxPositionEmbeddings)
			wl := 2 * math.Pi / fr
			if wl > old/sc.LowFreqFactor {
				fr /= sc.Factor
			} else if wl >= old/sc.HighFreqFactor {
				sm := (old/wl - sc.LowFreqFactor) / (sc.HighFreqFactor - sc.LowFreqFactor)
				fr = (1-sm)*fr/sc.Factor + sm*fr
			}
		}
		return fr
	}
	rot := func(v []float64, pos int) {
		for i := 0; i < d/2; i++ {
			a, b := i, i+d/2
			if c.Rope == model.RopeInterleaved {
				a, b = 2*i, 2*i+1
			}
			th := float64(pos) * invFreq(i)
			x0, x1 := v[a], v[b]
			v[a] = x0*math.Cos(th) - x1*math.Sin(th)
			v[b] = x1*math.Cos(th) + x0*math.Sin(th)
		}
	}
	T := len(toks)
	xs := make([][]float64, T)
	for t, id := range toks {
		xs[t] = make([]float64, H)
		for i := range xs[t] {
			xs[t][i] = f(m.Embed, id*H+i)
		}
	}
	for _, l := range m.Layers {
		if l.Heads > 0 {
			qs, ks, vs := make([][]float64, T), make([][]float64, T), make([][]float64, T)
			for t := range xs {
				xn := rms(xs[t], l.AttnNorm)
				qs[t], ks[t], vs[t] = lin(xn, l.Wq, l.Bq, l.Heads*d), lin(xn, l.Wk, l.Bk, l.KVHeads*d), lin(xn, l.Wv, l.Bv, l.KVHeads*d)
				for h := 0; h < l.Heads; h++ {
					rot(qs[t][h*d:(h+1)*d], t)
				}
				for h := 0; h < l.KVHeads; h++ {
					rot(ks[t][h*d:(h+1)*d], t)
				}
			}
			for t := range xs {
				att := make([]float64, l.Heads*d)
				for h := 0; h < l.Heads; h++ {
					kh := h / (l.Heads / max(l.KVHeads, 1))
					if l.KVMap != nil {
						kh = l.KVMap[h]
					}
					sc := make([]float64, t+1)
					mx := math.Inf(-1)
					for j := 0; j <= t; j++ {
						for i := 0; i < d; i++ {
							sc[j] += qs[t][h*d+i] * ks[j][kh*d+i]
						}
						sc[j] /= math.Sqrt(float64(d))
						mx = math.Max(mx, sc[j])
					}
					z := 0.0
					for j := range sc {
						sc[j] = math.Exp(sc[j] - mx)
						z += sc[j]
					}
					for j := range sc {
						for i := 0; i < d; i++ {
							att[h*d+i] += sc[j] / z * vs[j][kh*d+i]
						}
					}
				}
				o := lin(att, l.Wo, l.Bo, H)
				for i := range o {
					xs[t][i] += o[i]
				}
			}
		}
		if l.Inter > 0 {
			for t := range xs {
				xn := rms(xs[t], l.MLPNorm)
				g, u := lin(xn, l.Wgate, l.Bgate, l.Inter), lin(xn, l.Wup, l.Bup, l.Inter)
				for i := range g {
					g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
				}
				o := lin(g, l.Wdown, l.Bdown, H)
				for i := range o {
					xs[t][i] += o[i]
				}
			}
		}
	}
	out := make([][]float64, T)
	for t := range xs {
		out[t] = lin(rms(xs[t], m.Norm), m.LMHead, nil, c.Vocab)
	}
	return out
}

func TestForwardMatchesFloat64Reference(t *testing.T) {
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	cases := []randCfg{
		{Heads: 4, KV: 4, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2},                                // MHA, half rope, untied
		{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2, Interleaved: true, Tied: true}, // GQA, llama2.c rope, tied
		{Heads: 6, KV: 2, HD: 4, Hidden: 20, Inter: 30, Vocab: 40, Layers: 3, Bias: true},                    // GQA + Qwen2 biases
		{Heads: 8, KV: 4, HD: 16, Hidden: 64, Inter: 40, Vocab: 33, Layers: 2, Llama3: true, Tied: true},     // llama3 rope scaling
		{Heads: 2, KV: 1, HD: 8, Hidden: 16, Inter: 24, Vocab: 30, Layers: 2, Interleaved: true, Bias: true}, // one KV head: pruned layer loses attention
		// Pruned GQA with ragged groups: 8 query heads over 4 KV heads keeping
		// {0,1,2,5,7} (KV heads read by 2,1,1,1 heads), keeping {2,3,6} (KV
		// heads 0 and 2 dropped, groups 2+1), and MHA keeping {1,3}.
		{Heads: 8, KV: 4, HD: 8, Hidden: 32, Inter: 40, Vocab: 37, Layers: 3, Bias: true, MLPBias: true, KeepHeads: []int{0, 1, 2, 5, 7}},
		{Heads: 8, KV: 4, HD: 4, Hidden: 24, Inter: 20, Vocab: 29, Layers: 2, Interleaved: true, Tied: true, KeepHeads: []int{2, 3, 6}},
		{Heads: 4, KV: 4, HD: 8, Hidden: 32, Inter: 30, Vocab: 31, Layers: 2, Llama3: true, KeepHeads: []int{1, 3}},
	}
	for ci, rc := range cases {
		for _, pruned := range []bool{false, true} {
			t.Run(fmt.Sprintf("case%d/pruned=%v", ci, pruned), func(t *testing.T) {
				m := randomModel(rc, pruned, uint64(ci+1))
				if err := m.Validate("random"); err != nil {
					t.Fatal(err)
				}
				seqs := [][]int{{1, 5, 7, 3, 9, 2, 11, 4, 8, 6, 12, 13}, {3, 2}, {0, 19, 17, 1, 3, 5, 9}}
				logits := m.Forward(be, seqs)
				V := m.Cfg.Vocab
				row := 0
				for _, s := range seqs {
					ref := refForward(m, s)
					for tt := range s {
						for v := 0; v < V; v++ {
							got, want := float64(logits[(row+tt)*V+v]), ref[tt][v]
							if math.Abs(got-want) > 2e-4*(1+math.Abs(want)) {
								t.Fatalf("seq len %d pos %d vocab %d: got %.7g want %.7g", len(s), tt, v, got, want)
							}
						}
					}
					row += len(s)
				}
			})
		}
	}
}

// Incremental decoding with the KV cache must give the logits of the full pass.
func TestKVCacheMatchesFullForward(t *testing.T) {
	for _, rc := range []randCfg{
		{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2, Bias: true},
		{Heads: 8, KV: 4, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2, Bias: true, KeepHeads: []int{0, 1, 2, 5, 7}},
	} {
		testKVCache(t, randomModel(rc, true, 3))
	}
}

func testKVCache(t *testing.T, m *model.Model) {
	be, _ := backend.Get("")
	toks := []int{4, 8, 15, 16, 23, 42, 1, 2, 3}
	full := m.Forward(be, [][]int{toks})
	cache := m.NewCache()
	V := m.Cfg.Vocab
	got := m.Step(be, cache, toks[:4])
	for i := 4; i <= len(toks); i++ {
		want := full[(i-1)*V : i*V]
		for v := range want {
			if math.Abs(float64(got[v]-want[v])) > 1e-4*(1+math.Abs(float64(want[v]))) {
				t.Fatalf("after %d tokens, vocab %d: cached %g full %g", i, v, got[v], want[v])
			}
		}
		if i < len(toks) {
			got = m.Step(be, cache, toks[i:i+1])
		}
	}
}

// A continuation segment must get the logits it gets when its whole sequence
// (ancestors + itself) runs unshared.
func TestSegmentsMatchUnsharedForward(t *testing.T) {
	for _, rc := range []randCfg{
		{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2, Bias: true},
		{Heads: 8, KV: 4, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2, Bias: true, KeepHeads: []int{0, 1, 2, 5, 7}},
	} {
		testSegments(t, randomModel(rc, true, 5))
	}
}

func testSegments(t *testing.T, m *model.Model) {
	be, _ := backend.Get("")
	segs := []model.Segment{
		{Tokens: []int{1, 2, 3, 4, 5}, Parent: -1},
		{Tokens: []int{6, 7}, Parent: 0},
		{Tokens: []int{8}, Parent: 0},
		{Tokens: []int{9, 10, 11}, Parent: 1},
		{Tokens: []int{12, 13}, Parent: -1},
	}
	x, rows, err := m.HiddenSegments(be, segs)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Logits(be, x, rows)
	V := m.Cfg.Vocab
	row := 0
	for i, s := range segs {
		full := append([]int(nil), s.Tokens...)
		for p := s.Parent; p >= 0; p = segs[p].Parent {
			full = append(append([]int(nil), segs[p].Tokens...), full...)
		}
		want := m.Forward(be, [][]int{full})
		off := (len(full) - len(s.Tokens)) * V
		for j := 0; j < len(s.Tokens)*V; j++ {
			g, w := got[row*V+j], want[off+j]
			if math.Abs(float64(g-w)) > 1e-5*(1+math.Abs(float64(w))) {
				t.Fatalf("segment %d, element %d: shared %g unshared %g", i, j, g, w)
			}
		}
		row += len(s.Tokens)
	}
	if _, _, err := m.HiddenSegments(be, []model.Segment{{Tokens: []int{1}, Parent: 0}}); err == nil {
		t.Fatal("a segment that is its own parent was accepted")
	}
}

// Empty segments contribute no rows and do not disturb their neighbours.
func TestEmptySegments(t *testing.T) {
	be, _ := backend.Get("")
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2}, false, 9)
	x, rows, err := m.HiddenSegments(be, []model.Segment{{Tokens: []int{1, 2, 3}, Parent: -1}, {Tokens: nil, Parent: 0}, {Tokens: []int{4}, Parent: 1}, {Tokens: nil, Parent: -1}})
	if err != nil {
		t.Fatal(err)
	}
	if rows != 4 {
		t.Fatalf("rows %d, want 4", rows)
	}
	got := m.Logits(be, x, rows)
	want := m.Forward(be, [][]int{{1, 2, 3, 4}})
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("logit %d: %g, want %g", i, got[i], want[i])
		}
	}
}
