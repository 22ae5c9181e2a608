package train

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
)

type randCfg struct {
	heads, kv, hd, hidden, inter, vocab, layers int
	interleaved, bias, tied, llama3, mlpBias    bool
}

// randomModel builds a small model with random weights. With pruned, layer 1
// loses one KV group of heads and 3 MLP neurons (all attention if only one
// KV head is left), and, when there are 3+ layers, layer 2 loses its MLP.
func randomModel(rc randCfg, pruned bool, seed uint64) *model.Model {
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
	c := model.Config{Arch: "llama", Hidden: rc.hidden, Layers: rc.layers, Heads: rc.heads, KVHeads: rc.kv, HeadDim: rc.hd,
		Intermediate: rc.inter, Vocab: rc.vocab, MaxSeq: 64, RopeTheta: 10000, RMSEps: 1e-5, Tied: rc.tied, AttnBias: rc.bias, MLPBias: rc.mlpBias}
	if rc.interleaved {
		c.Rope = model.RopeInterleaved
	}
	if rc.llama3 {
		c.RopeTheta = 500000
		c.RopeScaling = &model.RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
	}
	m := &model.Model{Cfg: c, Embed: rnd(c.Vocab*c.Hidden, 1), Norm: norm(c.Hidden)}
	if rc.tied {
		m.LMHead = m.Embed
	} else {
		m.LMHead = rnd(c.Vocab*c.Hidden, 0.3)
	}
	for i := 0; i < c.Layers; i++ {
		heads, kv, inter := rc.heads, rc.kv, rc.inter
		if pruned && i == 1 {
			heads, inter = rc.heads-rc.heads/rc.kv, rc.inter-3
			kv = rc.kv - 1
			if kv == 0 {
				heads, kv = 0, 0
			}
		}
		if pruned && i == 2 {
			inter = 0
		}
		s := 1 / math.Sqrt(float64(c.Hidden))
		l := model.Layer{Heads: heads, KVHeads: kv, Inter: inter, AttnNorm: norm(c.Hidden), MLPNorm: norm(c.Hidden),
			Wq: rnd(heads*rc.hd*c.Hidden, s), Wk: rnd(kv*rc.hd*c.Hidden, s), Wv: rnd(kv*rc.hd*c.Hidden, s),
			Wo: rnd(c.Hidden*heads*rc.hd, s), Wgate: rnd(inter*c.Hidden, s), Wup: rnd(inter*c.Hidden, s),
			Wdown: rnd(c.Hidden*inter, 1/math.Sqrt(float64(max(inter, 1))))}
		if rc.bias && heads > 0 {
			l.Bq, l.Bk, l.Bv = rnd(heads*rc.hd, 0.1), rnd(kv*rc.hd, 0.1), rnd(kv*rc.hd, 0.1)
		}
		if rc.mlpBias {
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

func cpu(t testing.TB) backend.Backend {
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// mirror returns the hub mirror folder from DARWINLM_HUB_MIRROR (a relative
// value is resolved against the module root), or skips.
func mirror(t testing.TB) string {
	v := os.Getenv("DARWINLM_HUB_MIRROR")
	if v == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	if !filepath.IsAbs(v) {
		dir, _ := os.Getwd()
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			p := filepath.Dir(dir)
			if p == dir {
				break
			}
			dir = p
		}
		v = filepath.Join(dir, v)
	}
	return v
}
