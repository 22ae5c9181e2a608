package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
)

type randCfg struct {
	heads, kv, hd, hidden, inter, vocab, layers int
	interleaved, bias, tied, llama3             bool
}

// randomModel builds a small model with random weights; layer widths may be
// pruned (layer 1 gets fewer heads and a narrower MLP when pruned is set).
func randomModel(rc randCfg, pruned bool, seed uint64) *Model {
	r := rand.New(rand.NewPCG(seed, 7))
	rnd := func(n int, s float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * s)
		}
		return out
	}
	norm := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(1 + 0.3*r.NormFloat64())
		}
		return out
	}
	c := Config{Arch: "llama", Hidden: rc.hidden, Layers: rc.layers, Heads: rc.heads, KVHeads: rc.kv, HeadDim: rc.hd,
		Intermediate: rc.inter, Vocab: rc.vocab, MaxSeq: 64, RopeTheta: 10000, RMSEps: 1e-5, Tied: rc.tied, AttnBias: rc.bias}
	if rc.interleaved {
		c.Rope = RopeInterleaved
	}
	if rc.llama3 {
		c.RopeTheta = 500000
		c.RopeScaling = &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
	}
	m := &Model{Cfg: c, Embed: rnd(c.Vocab*c.Hidden, 1), Norm: norm(c.Hidden)}
	if rc.tied {
		m.LMHead = m.Embed
	} else {
		m.LMHead = rnd(c.Vocab*c.Hidden, 0.3)
	}
	for i := 0; i < c.Layers; i++ {
		heads, kv, inter := rc.heads, rc.kv, rc.inter
		if pruned && i == 1 {
			heads, inter = rc.heads-rc.heads/rc.kv*1, rc.inter-3
			kv = rc.kv - 1
			if kv == 0 {
				heads, kv = 0, 0
			}
		}
		s := 1 / math.Sqrt(float64(c.Hidden))
		l := Layer{Heads: heads, KVHeads: kv, Inter: inter, AttnNorm: norm(c.Hidden), MLPNorm: norm(c.Hidden),
			Wq: rnd(heads*rc.hd*c.Hidden, s), Wk: rnd(kv*rc.hd*c.Hidden, s), Wv: rnd(kv*rc.hd*c.Hidden, s),
			Wo: rnd(c.Hidden*heads*rc.hd, s), Wgate: rnd(inter*c.Hidden, s), Wup: rnd(inter*c.Hidden, s),
			Wdown: rnd(c.Hidden*inter, 1/math.Sqrt(float64(max(inter, 1))))}
		if rc.bias {
			l.Bq, l.Bk, l.Bv = rnd(heads*rc.hd, 0.1), rnd(kv*rc.hd, 0.1), rnd(kv*rc.hd, 0.1)
		}
		m.Layers = append(m.Layers, l)
	}
	return m
}

// refForward is an independent float64 Llama forward pass for one sequence,
// written token by token with RoPE angles computed directly in float64.
func refForward(m *Model, toks []int) [][]float64 {
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
			if c.Rope == RopeInterleaved {
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
					kh := h / (l.Heads / l.KVHeads)
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
		{heads: 4, kv: 4, hd: 8, hidden: 32, inter: 48, vocab: 50, layers: 2},                                // MHA, half rope, untied
		{heads: 4, kv: 2, hd: 8, hidden: 32, inter: 48, vocab: 50, layers: 2, interleaved: true, tied: true}, // GQA, llama2.c rope, tied
		{heads: 6, kv: 2, hd: 4, hidden: 20, inter: 30, vocab: 40, layers: 3, bias: true},                    // GQA + Qwen2 biases
		{heads: 8, kv: 4, hd: 16, hidden: 64, inter: 40, vocab: 33, layers: 2, llama3: true, tied: true},     // llama3 rope scaling
		{heads: 2, kv: 1, hd: 8, hidden: 16, inter: 24, vocab: 30, layers: 2, interleaved: true, bias: true}, // one KV head: pruned layer loses attention
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
	be, _ := backend.Get("")
	m := randomModel(randCfg{heads: 4, kv: 2, hd: 8, hidden: 32, inter: 48, vocab: 50, layers: 2, bias: true}, true, 3)
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
	be, _ := backend.Get("")
	m := randomModel(randCfg{heads: 4, kv: 2, hd: 8, hidden: 32, inter: 48, vocab: 50, layers: 2, bias: true}, true, 5)
	segs := []Segment{
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
	if _, _, err := m.HiddenSegments(be, []Segment{{Tokens: []int{1}, Parent: 0}}); err == nil {
		t.Fatal("a segment that is its own parent was accepted")
	}
}
