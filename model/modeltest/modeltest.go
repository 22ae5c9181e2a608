// Package modeltest builds small Llama models with random weights for the
// tests of the model, train, eval and pruning packages: dense or with pruned
// layer widths (fewer heads, narrower MLPs, layers without attention or MLP,
// GQA layers whose kept query heads share K/V heads unevenly).
package modeltest

import (
	"math"
	"math/rand/v2"

	"github.com/darwinlm/darwinlm-go/model"
)

// Cfg describes a random model: dense widths and which features it uses.
type Cfg struct {
	Heads, KV, HD, Hidden, Inter, Vocab, Layers int
	// Interleaved selects llama2.c RoPE, Bias q/k/v biases (Qwen2), Tied a
	// tied head, Llama3 llama3 rope scaling, MLPBias MLP and o_proj biases.
	Interleaved, Bias, Tied, Llama3, MLPBias bool
	// KeepHeads, when set, are the query heads (ascending, of the dense
	// layout) that layer 1 of a pruned model keeps, with the K/V heads they
	// read (so groups may be ragged: a KVMap), instead of losing a group.
	KeepHeads []int
}

// RaggedKVMap is the layout of a layer keeping query heads keep of a dense
// layer with heads query heads over kv K/V heads: the number of K/V heads
// left and the map of each kept head to its renumbered K/V head (nil when
// that is the standard grouping). Written here independently of
// model.SliceLayer.
func RaggedKVMap(heads, kv int, keep []int) (int, []int) {
	group := heads / kv
	newIdx := make([]int, kv)
	for i := range newIdx {
		newIdx[i] = -1
	}
	n := 0
	for g := 0; g < kv; g++ {
		for _, h := range keep {
			if h/group == g {
				newIdx[g] = n
				n++
				break
			}
		}
	}
	m := make([]int, len(keep))
	standard := n > 0 && len(keep)%n == 0
	for i, h := range keep {
		m[i] = newIdx[h/group]
		if standard && m[i] != i/(len(keep)/n) {
			standard = false
		}
	}
	if standard || len(keep) == 0 {
		return n, nil
	}
	return n, m
}

// Random builds a small model with random weights. With pruned, layer 1
// loses one KV group of heads and 3 MLP neurons (all attention if only one
// KV head is left; with KeepHeads it keeps those heads), and, when there
// are 3+ layers, layer 2 loses its MLP.
func Random(rc Cfg, pruned bool, seed uint64) *model.Model {
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
	c := model.Config{Arch: "llama", Hidden: rc.Hidden, Layers: rc.Layers, Heads: rc.Heads, KVHeads: rc.KV, HeadDim: rc.HD,
		Intermediate: rc.Inter, Vocab: rc.Vocab, MaxSeq: 64, RopeTheta: 10000, RMSEps: 1e-5, Tied: rc.Tied, AttnBias: rc.Bias, MLPBias: rc.MLPBias}
	if rc.Interleaved {
		c.Rope = model.RopeInterleaved
	}
	if rc.Llama3 {
		c.RopeTheta = 500000
		c.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
	}
	m := &model.Model{Cfg: c, Embed: rnd(c.Vocab*c.Hidden, 1), Norm: norm(c.Hidden)}
	if rc.Tied {
		m.LMHead = m.Embed
	} else {
		m.LMHead = rnd(c.Vocab*c.Hidden, 0.3)
	}
	for i := 0; i < c.Layers; i++ {
		heads, kv, inter := rc.Heads, rc.KV, rc.Inter
		var kvMap []int
		if pruned && i == 1 {
			heads, inter = rc.Heads-rc.Heads/rc.KV, rc.Inter-3
			kv = rc.KV - 1
			if kv == 0 {
				heads, kv = 0, 0
			}
			if rc.KeepHeads != nil {
				heads = len(rc.KeepHeads)
				kv, kvMap = RaggedKVMap(rc.Heads, rc.KV, rc.KeepHeads)
			}
		}
		if pruned && i == 2 {
			inter = 0
		}
		s := 1 / math.Sqrt(float64(c.Hidden))
		l := model.Layer{Heads: heads, KVHeads: kv, KVMap: kvMap, Inter: inter, AttnNorm: norm(c.Hidden), MLPNorm: norm(c.Hidden),
			Wq: rnd(heads*rc.HD*c.Hidden, s), Wk: rnd(kv*rc.HD*c.Hidden, s), Wv: rnd(kv*rc.HD*c.Hidden, s),
			Wo: rnd(c.Hidden*heads*rc.HD, s), Wgate: rnd(inter*c.Hidden, s), Wup: rnd(inter*c.Hidden, s),
			Wdown: rnd(c.Hidden*inter, 1/math.Sqrt(float64(max(inter, 1))))}
		if rc.Bias && heads > 0 {
			l.Bq, l.Bk, l.Bv = rnd(heads*rc.HD, 0.1), rnd(kv*rc.HD, 0.1), rnd(kv*rc.HD, 0.1)
		}
		if rc.MLPBias {
			if inter > 0 {
				l.Bgate, l.Bup, l.Bdown = rnd(inter, 0.1), rnd(inter, 0.1), rnd(c.Hidden, 0.1)
			}
			if heads > 0 {
				l.Bo = rnd(c.Hidden, 0.1)
			}
		}
		m.Layers = append(m.Layers, l)
	}
	return m
}
