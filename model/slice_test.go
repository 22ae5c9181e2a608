package model_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// headRows returns rows [h*d, (h+1)*d) of a [n*d × cols] matrix.
func headRows(w []float32, h, d, cols int) []float32 { return w[h*d*cols : (h+1)*d*cols] }

func TestSliceLayerLayout(t *testing.T) {
	gqa := randomModel(randCfg{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 1, Bias: true}, false, 1)
	mha := randomModel(randCfg{Heads: 4, KV: 4, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 1, Bias: true}, false, 2)
	for _, c := range []struct {
		m       *model.Model
		keep    []int
		kv      int
		kvHeads []int // original K/V heads kept
		kvMap   []int
	}{
		{gqa, []int{0, 1, 2, 5, 7}, 4, []int{0, 1, 2, 3}, []int{0, 0, 1, 2, 3}},
		{gqa, []int{2, 3, 6}, 2, []int{1, 3}, []int{0, 0, 1}},
		{gqa, []int{0, 1, 4, 5}, 2, []int{0, 2}, nil}, // standard grouping again
		{gqa, []int{7}, 1, []int{3}, nil},
		{mha, []int{1, 3}, 2, []int{1, 3}, nil}, // MHA drops k/v with the head
	} {
		l := &c.m.Layers[0]
		cfg := c.m.Cfg
		H, d := cfg.Hidden, cfg.HeadDim
		s, err := model.SliceLayer(cfg, l, c.keep, nil, []int{0, 3, 11}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := model.SlicedParams(cfg, l, c.keep, []int{0, 3, 11}); err != nil || n != s.NumParams() {
			t.Fatalf("keep %v: SlicedParams %d (%v), sliced layer has %d", c.keep, n, err, s.NumParams())
		}
		// The independent derivation of the test models agrees.
		if kv, km := modeltest.RaggedKVMap(l.Heads, l.KVHeads, c.keep); kv != c.kv || !slices.Equal(km, c.kvMap) {
			t.Fatalf("keep %v: RaggedKVMap gives %d %v, want %d %v", c.keep, kv, km, c.kv, c.kvMap)
		}
		if s.Heads != len(c.keep) || s.KVHeads != c.kv || !slices.Equal(s.KVMap, c.kvMap) || (c.kvMap == nil) != (s.KVMap == nil) {
			t.Fatalf("keep %v: got %d heads, %d KV heads, map %v; want %d, %d, %v", c.keep, s.Heads, s.KVHeads, s.KVMap, len(c.keep), c.kv, c.kvMap)
		}
		for i, h := range c.keep {
			if !slices.Equal(headRows(s.Wq, i, d, H), headRows(l.Wq, h, d, H)) || !slices.Equal(headRows(s.Bq, i, d, 1), headRows(l.Bq, h, d, 1)) {
				t.Fatalf("keep %v: q rows of head %d", c.keep, h)
			}
			for r := 0; r < H; r++ {
				if !slices.Equal(s.Wo[r*len(c.keep)*d+i*d:r*len(c.keep)*d+(i+1)*d], l.Wo[r*l.Heads*d+h*d:r*l.Heads*d+(h+1)*d]) {
					t.Fatalf("keep %v: o_proj columns of head %d", c.keep, h)
				}
			}
			// Each kept head still reads its original K/V head.
			g := c.kvHeads[s.KVHead(i)]
			if g != h/(l.Heads/l.KVHeads) {
				t.Fatalf("keep %v: head %d reads original KV head %d", c.keep, h, g)
			}
		}
		for i, g := range c.kvHeads {
			for _, p := range [][2][]float32{{s.Wk, l.Wk}, {s.Wv, l.Wv}} {
				if !slices.Equal(headRows(p[0], i, d, H), headRows(p[1], g, d, H)) {
					t.Fatalf("keep %v: k/v rows of KV head %d", c.keep, g)
				}
			}
			if !slices.Equal(headRows(s.Bk, i, d, 1), headRows(l.Bk, g, d, 1)) || !slices.Equal(headRows(s.Bv, i, d, 1), headRows(l.Bv, g, d, 1)) {
				t.Fatalf("keep %v: k/v biases of KV head %d", c.keep, g)
			}
		}
		for i, j := range []int{0, 3, 11} {
			if !slices.Equal(s.Wgate[i*H:(i+1)*H], l.Wgate[j*H:(j+1)*H]) || !slices.Equal(s.Wup[i*H:(i+1)*H], l.Wup[j*H:(j+1)*H]) {
				t.Fatalf("gate/up rows of neuron %d", j)
			}
			for r := 0; r < H; r++ {
				if s.Wdown[r*3+i] != l.Wdown[r*l.Inter+j] {
					t.Fatalf("down_proj column of neuron %d", j)
				}
			}
		}
		m := c.m.Derive()
		m.Layers[0] = s
		if err := m.Validate("sliced"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSliceLayerErrors(t *testing.T) {
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 4, Hidden: 8, Inter: 6, Vocab: 10, Layers: 1}, false, 3)
	l := &m.Layers[0]
	for _, c := range []struct {
		heads, neurons []int
		wo, wdown      []float32
		want           string
	}{
		{[]int{1, 0}, nil, nil, nil, "ascending"},
		{[]int{1, 1}, nil, nil, nil, "ascending"},
		{[]int{4}, nil, nil, nil, "head 4 out of range"},
		{nil, []int{-1}, nil, nil, "neuron -1 out of range"},
		{[]int{0}, nil, make([]float32, 8*8), nil, "o_proj"},
		{nil, []int{0, 2}, nil, make([]float32, 8*3), "down_proj"},
	} {
		if _, err := model.SliceLayer(m.Cfg, l, c.heads, c.wo, c.neurons, c.wdown); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want mention of %q", c, err, c.want)
		}
	}
}

// sliceCase prunes every layer of m to random subsets (some layers keep
// everything, some lose a whole sublayer) and builds two models: the
// physically sliced one and the dense one with the removed heads' o_proj
// columns and the removed neurons' down_proj columns zeroed (an independent
// statement of what removal means). With newW, kept o_proj/down_proj columns
// are replaced by random matrices, passed to SliceLayer as wo/wdown and
// scattered into the dense copy.
func sliceCase(t *testing.T, m *model.Model, r *rand.Rand, allowEmpty, newW bool) (sliced, zeroed *model.Model) {
	c := m.Cfg
	H, d := c.Hidden, c.HeadDim
	sliced, zeroed = m.Derive(), m.Clone()
	pick := func(n, li int) []int {
		var keep []int
		switch {
		case li == 0: // everything
			for i := 0; i < n; i++ {
				keep = append(keep, i)
			}
		case allowEmpty && li == 1:
		default:
			for len(keep) == 0 {
				keep = keep[:0]
				for i := 0; i < n; i++ {
					if r.IntN(3) > 0 {
						keep = append(keep, i)
					}
				}
			}
		}
		return keep
	}
	for li := range m.Layers {
		l := &m.Layers[li]
		keepH, keepN := pick(l.Heads, li), pick(l.Inter, len(m.Layers)-1-li)
		var wo, wdown []float32
		if newW {
			wo = make([]float32, H*len(keepH)*d)
			wdown = make([]float32, H*len(keepN))
			for i := range wo {
				wo[i] = float32(r.NormFloat64() * 0.2)
			}
			for i := range wdown {
				wdown[i] = float32(r.NormFloat64() * 0.2)
			}
		}
		s, err := model.SliceLayer(c, l, keepH, wo, keepN, wdown)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := model.SlicedParams(c, l, keepH, keepN); err != nil || n != s.NumParams() {
			t.Fatalf("layer %d: SlicedParams %d (%v), sliced layer has %d", li, n, err, s.NumParams())
		}
		sliced.Layers[li] = s
		z := &zeroed.Layers[li]
		for h := 0; h < l.Heads; h++ {
			ki := slices.Index(keepH, h)
			for row := 0; row < H; row++ {
				for i := 0; i < d; i++ {
					v := float32(0)
					if ki >= 0 {
						v = z.Wo[row*l.Heads*d+h*d+i]
						if newW {
							v = wo[row*len(keepH)*d+ki*d+i]
						}
					}
					z.Wo[row*l.Heads*d+h*d+i] = v
				}
			}
		}
		for j := 0; j < l.Inter; j++ {
			ki := slices.Index(keepN, j)
			for row := 0; row < H; row++ {
				v := float32(0)
				if ki >= 0 {
					v = z.Wdown[row*l.Inter+j]
					if newW {
						v = wdown[row*len(keepN)+ki]
					}
				}
				z.Wdown[row*l.Inter+j] = v
			}
		}
	}
	if err := sliced.Validate("sliced"); err != nil {
		t.Fatal(err)
	}
	return sliced, zeroed
}

func TestSlicedForwardEqualsZeroedDense(t *testing.T) {
	be, _ := backend.Get("")
	r := rand.New(rand.NewPCG(4, 4))
	for ci, c := range []struct {
		rc         randCfg
		allowEmpty bool
	}{
		{randCfg{Heads: 8, KV: 4, HD: 8, Hidden: 32, Inter: 40, Vocab: 37, Layers: 4, Bias: true}, true},
		{randCfg{Heads: 8, KV: 2, HD: 4, Hidden: 24, Inter: 30, Vocab: 29, Layers: 3, Interleaved: true, Tied: true}, true},
		{randCfg{Heads: 4, KV: 4, HD: 8, Hidden: 32, Inter: 20, Vocab: 31, Layers: 3, Llama3: true}, true},               // MHA
		{randCfg{Heads: 6, KV: 3, HD: 4, Hidden: 16, Inter: 20, Vocab: 23, Layers: 3, Bias: true, MLPBias: true}, false}, // biases: no sublayer fully removed
	} {
		for _, newW := range []bool{false, true} {
			m := randomModel(c.rc, false, uint64(10+ci))
			sliced, zeroed := sliceCase(t, m, r, c.allowEmpty, newW)
			seqs := [][]int{{1, 5, 7, 3, 9, 2, 11, 4, 8, 6, 12}, {3, 2}, {0, 19, 17, 1, 3}}
			got, want := sliced.Forward(be, seqs), zeroed.Forward(be, seqs)
			if dense := m.Forward(be, seqs); slices.Equal(dense, want) {
				t.Fatalf("case %d: pruning changed nothing", ci)
			}
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 2e-5*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("case %d newW=%v: logit %d sliced %g, zeroed dense %g", ci, newW, i, got[i], want[i])
				}
			}
			// The KV-cache path of the sliced model gives the same logits.
			cache := sliced.NewCache()
			sliced.Step(be, cache, seqs[0][:6])
			last := sliced.Step(be, cache, seqs[0][6:])
			V := m.Cfg.Vocab
			for v := 0; v < V; v++ {
				w := want[(len(seqs[0])-1)*V+v]
				if math.Abs(float64(last[v]-w)) > 2e-5*(1+math.Abs(float64(w))) {
					t.Fatalf("case %d: cached logit %d: %g want %g", ci, v, last[v], w)
				}
			}
			// Parameters: the dense count less what was removed.
			var removed int64
			for li := range m.Layers {
				dl, sl := &m.Layers[li], &sliced.Layers[li]
				H, d := int64(m.Cfg.Hidden), int64(m.Cfg.HeadDim)
				removed += int64(dl.Heads-sl.Heads)*d*2*H + int64(dl.KVHeads-sl.KVHeads)*d*2*H + int64(dl.Inter-sl.Inter)*3*H
				if c.rc.Bias {
					removed += int64(dl.Heads-sl.Heads)*d + int64(dl.KVHeads-sl.KVHeads)*d*2
				}
				if c.rc.MLPBias {
					removed += int64(dl.Inter-sl.Inter) * 2
				}
			}
			if got, want := sliced.NumParams(), m.NumParams()-removed; got != want {
				t.Errorf("case %d: sliced model has %d parameters, want %d", ci, got, want)
			}
		}
	}
}

// A whole sublayer removed: nil tensors, zero widths.
func TestSliceLayerRemovesModules(t *testing.T) {
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 4, Hidden: 8, Inter: 6, Vocab: 10, Layers: 1, Bias: true, MLPBias: true}, false, 5)
	s, err := model.SliceLayer(m.Cfg, &m.Layers[0], nil, nil, []int{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Heads != 0 || s.KVHeads != 0 || s.Inter != 0 || s.KVMap != nil || s.Wq != nil || s.Wk != nil || s.Wv != nil || s.Wo != nil ||
		s.Bq != nil || s.Bk != nil || s.Bv != nil || s.Bo != nil || s.Wgate != nil || s.Wup != nil || s.Wdown != nil || s.Bgate != nil || s.Bup != nil || s.Bdown != nil {
		t.Fatalf("removed sublayers keep something: %+v", s)
	}
	if s.AttnNorm == nil || s.MLPNorm == nil {
		t.Fatal("norm weights dropped")
	}
	d := m.Derive()
	d.Layers[0] = s
	if err := d.Validate("x"); err != nil {
		t.Fatal(err)
	}
	if got, want := d.NumParams(), m.NumParams()-int64(len(m.Layers[0].Wq)+2*len(m.Layers[0].Wk)+len(m.Layers[0].Wo)+3*len(m.Layers[0].Wup)+
		len(m.Layers[0].Bq)+2*len(m.Layers[0].Bk)+len(m.Layers[0].Bo)+2*len(m.Layers[0].Bup)+len(m.Layers[0].Bdown)); got != want {
		t.Fatalf("params %d, want %d", got, want)
	}
	// Embedding then the layer alone is the identity now.
	x := d.EmbedSeqs([][]int{{1, 2}})
	x0 := slices.Clone(x)
	be, _ := backend.Get("")
	if err := d.RunLayer(be, 0, x, []int{2}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x, x0) {
		t.Fatal("a layer without sublayers changed its input")
	}
}

func TestCloneAndDerive(t *testing.T) {
	be, _ := backend.Get("")
	for _, tied := range []bool{false, true} {
		m := randomModel(randCfg{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 2, Tied: tied, Llama3: true, KeepHeads: []int{0, 1, 2, 5, 7}}, true, 6)
		seqs := [][]int{{1, 2, 3, 4}}
		want := m.Forward(be, seqs)
		c := m.Clone()
		if tied != (&c.LMHead[0] == &c.Embed[0]) {
			t.Fatalf("tied=%v: clone's head tied %v", tied, &c.LMHead[0] == &c.Embed[0])
		}
		if &c.Embed[0] == &m.Embed[0] || &c.Layers[0].Wq[0] == &m.Layers[0].Wq[0] || &c.Layers[1].KVMap[0] == &m.Layers[1].KVMap[0] ||
			c.Cfg.RopeScaling == m.Cfg.RopeScaling {
			t.Fatal("clone shares memory with the original")
		}
		if !reflect.DeepEqual(c.Layers, m.Layers) || !slices.Equal(c.Embed, m.Embed) || !slices.Equal(c.LMHead, m.LMHead) || !reflect.DeepEqual(c.Cfg, m.Cfg) {
			t.Fatal("clone differs from the original")
		}
		// Writing the clone (as training does) leaves the original alone.
		for _, l := range c.Layers {
			for _, p := range l.Tensors() {
				for i := range *p {
					(*p)[i] *= 0.5
				}
			}
		}
		c.Embed[0] = 7
		if got := m.Forward(be, seqs); !slices.Equal(got, want) {
			t.Fatal("writing the clone changed the original")
		}
		dv := m.Derive()
		if &dv.Layers[0] == &m.Layers[0] || &dv.Layers[0].Wq[0] != &m.Layers[0].Wq[0] || &dv.Embed[0] != &m.Embed[0] {
			t.Fatal("derive must alias tensors but not the layers slice")
		}
		if got := dv.Forward(be, seqs); !slices.Equal(got, want) {
			t.Fatal("derived model computes something else")
		}
		dv.Layers[0] = model.Layer{AttnNorm: m.Layers[0].AttnNorm, MLPNorm: m.Layers[0].MLPNorm}
		if m.Layers[0].Heads == 0 {
			t.Fatal("replacing a derived layer changed the original")
		}
	}
}

// A pruned model with ragged KV maps round-trips through SaveHF/LoadHF: the
// map is in config.json beside the widths, and the logits are bitwise equal.
func TestKVMapSaveLoadRoundTrip(t *testing.T) {
	be, _ := backend.Get("")
	m := randomModel(randCfg{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 3, Bias: true, KeepHeads: []int{2, 3, 6}}, true, 7)
	s, err := model.SliceLayer(m.Cfg, &m.Layers[2], []int{0, 1, 2, 5, 7}, nil, []int{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Layers[2] = s
	if m.Layers[1].KVMap == nil || m.Layers[2].KVMap == nil {
		t.Fatal("test model has no ragged layers")
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := model.SaveHF(m, dir, ""); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg[model.KVMapsKey]; !reflect.DeepEqual(got, []any{nil, []any{0.0, 0.0, 1.0}, []any{0.0, 0.0, 1.0, 2.0, 3.0}}) {
		t.Fatalf("config.json %s = %v", model.KVMapsKey, got)
	}
	l, err := model.LoadHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Layers {
		if !slices.Equal(l.Layers[i].KVMap, m.Layers[i].KVMap) || l.Layers[i].KVHeads != m.Layers[i].KVHeads {
			t.Fatalf("layer %d: loaded map %v (%d KV heads), saved %v (%d)", i, l.Layers[i].KVMap, l.Layers[i].KVHeads, m.Layers[i].KVMap, m.Layers[i].KVHeads)
		}
	}
	seqs := [][]int{{1, 2, 3, 4, 5}}
	if !slices.Equal(l.Forward(be, seqs), m.Forward(be, seqs)) || l.NumParams() != m.NumParams() {
		t.Fatal("reloaded model differs")
	}
	// A corrupted map is refused with the file and key named.
	bad := strings.Replace(string(raw), "0,\n      0,\n      1,\n      2,\n      3", "0,\n      0,\n      1,\n      2,\n      9", 1)
	if bad == string(raw) {
		t.Fatalf("could not corrupt config.json:\n%s", raw)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := model.LoadHF(dir); err == nil || !strings.Contains(err.Error(), model.KVMapsKey+"[2]") || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("corrupt map: %v", err)
	}
}

func TestValidateKVMap(t *testing.T) {
	for _, c := range []struct {
		heads, kv int
		kvMap     []int
		want      string
	}{
		{3, 2, nil, "not a multiple"},
		{3, 2, []int{0, 1}, "2 entries"},
		{3, 2, []int{0, 2, 1}, "out of"},
		{3, 2, []int{0, 0, 0}, "read by no attention head"},
	} {
		m := randomModel(randCfg{Heads: 4, KV: 2, HD: 4, Hidden: 8, Inter: 6, Vocab: 10, Layers: 1}, false, 8)
		l := &m.Layers[0]
		d, H := m.Cfg.HeadDim, m.Cfg.Hidden
		l.Heads, l.KVHeads, l.KVMap = c.heads, c.kv, c.kvMap
		l.Wq, l.Wo = make([]float32, c.heads*d*H), make([]float32, c.heads*d*H)
		if err := m.Validate("v"); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "layer 0") {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
