package model

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/safetensors"
)

func TestPermutation(t *testing.T) {
	heads, hd, cols := 3, 8, 2
	w := make([]float32, heads*hd*cols)
	for r := 0; r < heads*hd; r++ {
		for c := 0; c < cols; c++ {
			w[r*cols+c] = float32(r*10 + c)
		}
	}
	p := PermuteInterleavedToHalf(w, heads, hd, cols)
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for c := 0; c < cols; c++ {
				// Interleaved pair (2i, 2i+1) lands on (i, i+hd/2).
				if p[(h*hd+i)*cols+c] != w[(h*hd+2*i)*cols+c] || p[(h*hd+i+hd/2)*cols+c] != w[(h*hd+2*i+1)*cols+c] {
					t.Fatalf("head %d pair %d not mapped", h, i)
				}
			}
		}
	}
	// Head 0 of an 8-dim head, written out by hand: rows 0,2,4,6,1,3,5,7.
	want := []float32{0, 20, 40, 60, 10, 30, 50, 70}
	for i, v := range want {
		if p[i*cols] != v {
			t.Errorf("row %d = %v, want %v", i, p[i*cols], v)
		}
	}
	if !reflect.DeepEqual(PermuteHalfToInterleaved(p, heads, hd, cols), w) {
		t.Error("inverse permutation does not restore the input")
	}
}

func sameModel(t *testing.T, a, b *Model) {
	t.Helper()
	cmp := func(name string, x, y []float32) {
		if len(x) != len(y) {
			t.Fatalf("%s: len %d vs %d", name, len(x), len(y))
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s[%d]: %v vs %v", name, i, x[i], y[i])
			}
		}
	}
	cmp("embed", a.Embed, b.Embed)
	cmp("norm", a.Norm, b.Norm)
	cmp("lm_head", a.LMHead, b.LMHead)
	if len(a.Layers) != len(b.Layers) {
		t.Fatalf("layers %d vs %d", len(a.Layers), len(b.Layers))
	}
	for i := range a.Layers {
		x, y := &a.Layers[i], &b.Layers[i]
		if x.Heads != y.Heads || x.KVHeads != y.KVHeads || x.Inter != y.Inter {
			t.Fatalf("layer %d widths %d/%d/%d vs %d/%d/%d", i, x.Heads, x.KVHeads, x.Inter, y.Heads, y.KVHeads, y.Inter)
		}
		for _, p := range []struct {
			n    string
			u, v []float32
		}{{"attn_norm", x.AttnNorm, y.AttnNorm}, {"wq", x.Wq, y.Wq}, {"wk", x.Wk, y.Wk}, {"wv", x.Wv, y.Wv}, {"wo", x.Wo, y.Wo},
			{"bq", x.Bq, y.Bq}, {"bk", x.Bk, y.Bk}, {"bv", x.Bv, y.Bv}, {"bo", x.Bo, y.Bo}, {"mlp_norm", x.MLPNorm, y.MLPNorm},
			{"gate", x.Wgate, y.Wgate}, {"up", x.Wup, y.Wup}, {"down", x.Wdown, y.Wdown}} {
			cmp(p.n, p.u, p.v)
		}
	}
}

func readConfigMap(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSaveHFRoundTrip(t *testing.T) {
	src := tinyStoriesDir(t)
	m, err := LoadHF(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "saved")
	if err := SaveHF(m, out, src); err != nil {
		t.Fatal(err)
	}
	r, err := LoadHF(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cfg != m.Cfg {
		t.Errorf("config\n got %+v\nwant %+v", r.Cfg, m.Cfg)
	}
	sameModel(t, m, r)
	if &r.LMHead[0] != &r.Embed[0] {
		t.Error("reloaded tied head does not alias")
	}
	cm := readConfigMap(t, out)
	if _, ok := cm[WidthsKey]; ok {
		t.Error("dense model got darwinlm_layer_widths")
	}
	if cm["tie_word_embeddings"] != true {
		t.Error("tie_word_embeddings not true")
	}
	f, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Lookup("lm_head.weight"); ok {
		t.Error("tied model saved lm_head.weight")
	}
	f.Close()
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"} {
		a, _ := os.ReadFile(filepath.Join(src, name))
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s not copied: %v", name, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Errorf("stray entries beside the output: %v", ents)
	}
	// Saving again replaces the folder.
	if err := SaveHF(m, out, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "tokenizer.json")); err == nil {
		t.Error("old folder contents survived the replacement")
	}
	// A folder that is not a model is never replaced.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644)
	if err := SaveHF(m, other, ""); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("replacing a non-model folder: %v", err)
	}
}

func prefixRows(w []float32, rows, cols int) []float32 {
	return append([]float32(nil), w[:rows*cols]...)
}

func TestSaveHFPruned(t *testing.T) {
	m, err := LoadHF(tinyStoriesDir(t))
	if err != nil {
		t.Fatal(err)
	}
	H, D := m.Cfg.Hidden, m.Cfg.HeadDim
	// Layer 0: keep 4 of 8 heads (2 of 4 KV groups) and 100 of 384 neurons.
	l := &m.Layers[0]
	l.Heads, l.KVHeads = 4, 2
	l.Wq = prefixRows(l.Wq, 4*D, H)
	l.Wk = prefixRows(l.Wk, 2*D, H)
	l.Wv = prefixRows(l.Wv, 2*D, H)
	wo := make([]float32, H*4*D)
	for r := 0; r < H; r++ {
		copy(wo[r*4*D:(r+1)*4*D], l.Wo[r*8*D:r*8*D+4*D])
	}
	l.Wo = wo
	l.Inter = 100
	l.Wgate = prefixRows(l.Wgate, 100, H)
	l.Wup = prefixRows(l.Wup, 100, H)
	wd := make([]float32, H*100)
	for r := 0; r < H; r++ {
		copy(wd[r*100:(r+1)*100], l.Wdown[r*384:r*384+100])
	}
	l.Wdown = wd
	// Layer 1: attention removed.
	l1 := &m.Layers[1]
	l1.Heads, l1.KVHeads, l1.Wq, l1.Wk, l1.Wv, l1.Wo = 0, 0, nil, nil, nil, nil
	if err := m.Validate("pruned"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "pruned")
	if err := SaveHF(m, out, ""); err != nil {
		t.Fatal(err)
	}
	cm := readConfigMap(t, out)
	wantW := []any{map[string]any{"heads": 4.0, "kv_heads": 2.0, "intermediate": 100.0}, map[string]any{"heads": 0.0, "kv_heads": 0.0, "intermediate": 384.0}}
	if !reflect.DeepEqual(cm[WidthsKey], wantW) {
		t.Errorf("widths = %v", cm[WidthsKey])
	}
	r, err := LoadHF(out)
	if err != nil {
		t.Fatal(err)
	}
	sameModel(t, m, r)
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	toks := [][]int{{1, 42, 7, 300, 5}}
	a, b := m.Forward(be, toks), r.Forward(be, toks)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: %v vs %v", i, a[i], b[i])
		}
	}
}

// TestSaveLlama2CAsHF converts stories260K (interleaved RoPE) to the HF
// layout and checks that the saved model computes the same logits.
func TestSaveLlama2CAsHF(t *testing.T) {
	ck := stories260K(t)
	m, err := LoadLlama2C(ck)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hf")
	if err := SaveHF(m, out, filepath.Dir(ck)); err != nil {
		t.Fatal(err)
	}
	cm := readConfigMap(t, out)
	if cm[ConvertedFromKey] != "llama2c" || cm[RopePermutationKey] == nil {
		t.Errorf("conversion not recorded: %v", cm)
	}
	tb, err := os.ReadFile(filepath.Join(out, "tokenizer.bin"))
	orig, _ := os.ReadFile(filepath.Join(filepath.Dir(ck), "tok512.bin"))
	if err != nil || !bytes.Equal(tb, orig) {
		t.Errorf("tokenizer.bin not copied from tok512.bin: %v", err)
	}
	r, err := LoadHF(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cfg.Rope != RopeHalf || r.Cfg.Arch != "llama" || r.Cfg.Vocab != 512 || r.Cfg.RMSEps != 1e-5 || r.Cfg.BOS != 1 || r.Cfg.EOS != 2 {
		t.Errorf("cfg %+v", r.Cfg)
	}
	// The permutation is applied to Wq and Wk only.
	D, H := m.Cfg.HeadDim, m.Cfg.Hidden
	for i := range m.Layers {
		if !reflect.DeepEqual(r.Layers[i].Wq, PermuteInterleavedToHalf(m.Layers[i].Wq, m.Layers[i].Heads, D, H)) ||
			!reflect.DeepEqual(r.Layers[i].Wk, PermuteInterleavedToHalf(m.Layers[i].Wk, m.Layers[i].KVHeads, D, H)) ||
			!reflect.DeepEqual(r.Layers[i].Wv, m.Layers[i].Wv) || !reflect.DeepEqual(r.Layers[i].Wo, m.Layers[i].Wo) {
			t.Fatalf("layer %d weights", i)
		}
	}
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	toks := [][]int{{1, 403, 407, 261, 378, 34, 260, 356}, {1, 9, 80}}
	a, b := m.Forward(be, toks), r.Forward(be, toks)
	maxd := 0.0
	for i := range a {
		d := math.Abs(float64(a[i] - b[i]))
		maxd = math.Max(maxd, d/(1+math.Abs(float64(a[i]))))
	}
	if maxd > 1e-4 {
		t.Errorf("saved HF model differs from the llama2.c model: max rel diff %g", maxd)
	}
	// Without the permutation the logits would differ: check the test has teeth.
	bad := &Model{Cfg: r.Cfg, Embed: r.Embed, Norm: r.Norm, LMHead: r.LMHead, Layers: append([]Layer(nil), r.Layers...)}
	for i := range bad.Layers {
		bad.Layers[i].Wq = m.Layers[i].Wq
		bad.Layers[i].Wk = m.Layers[i].Wk
	}
	c := bad.Forward(be, toks)
	diff := 0.0
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i]-c[i])))
	}
	if diff < 1e-3 {
		t.Errorf("unpermuted weights give the same logits (diff %g): test is blind", diff)
	}
	// The saved folder opens with its tokenizer.
	mo, tok, err := Open(out, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 512 || mo.Cfg.Vocab != 512 {
		t.Errorf("tokenizer vocab %d", tok.VocabSize())
	}
}
