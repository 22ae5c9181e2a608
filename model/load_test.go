package model

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/safetensors"
)

func tinyStoriesDir(t testing.TB) string {
	return filepath.Join(mirrorDir(t), "models/raincandy-u/TinyStories-656K")
}

func stories260K(t testing.TB) string {
	return filepath.Join(mirrorDir(t), "models/karpathy/tinyllamas/stories260K/stories260K.bin")
}

func TestLoadHFTinyStories(t *testing.T) {
	m, err := LoadHF(tinyStoriesDir(t))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Cfg
	if c.Hidden != 128 || c.Layers != 2 || c.Heads != 8 || c.KVHeads != 4 || c.Vocab != 2048 || !c.Tied || c.Rope != RopeHalf {
		t.Errorf("cfg %+v", c)
	}
	if &m.Embed[0] != &m.LMHead[0] {
		t.Error("tied LMHead does not alias Embed")
	}
	// Values computed with numpy from the file (lm_head.weight is the only
	// copy of the embeddings; __metadata__ aliases embed_tokens to it).
	if m.Embed[0] != -0.68359375 || m.Embed[1] != -0.02587890625 || m.Embed[2] != 0.58984375 {
		t.Errorf("embed[:3] = %v", m.Embed[:3])
	}
	l1 := m.Layers[1]
	if l1.Heads != 8 || l1.KVHeads != 4 || l1.Inter != 384 || l1.Wdown[0] != -0.17578125 || l1.Wdown[1] != -0.578125 || l1.Wdown[len(l1.Wdown)-1] != -0.1376953125 {
		t.Errorf("layer 1: %d/%d/%d down %v", l1.Heads, l1.KVHeads, l1.Inter, l1.Wdown[:2])
	}
	if l1.Bq != nil || l1.Bo != nil {
		t.Error("unexpected biases")
	}
	if n := m.NumParams(); n != (2048*128 + 128 + 2*(2*128+128*128*2+64*128*2+3*384*128)) {
		t.Errorf("params %d", n)
	}
}

func TestLoadLlama2C(t *testing.T) {
	p := stories260K(t)
	m, err := LoadLlama2C(p)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Cfg
	want := Config{Arch: "llama2c", Hidden: 64, Layers: 5, Heads: 8, KVHeads: 4, HeadDim: 8, Intermediate: 172, Vocab: 512, MaxSeq: 512,
		RopeTheta: 10000, Rope: RopeInterleaved, RMSEps: 1e-5, Tied: true, BOS: 1, EOS: 2}
	if c != want {
		t.Errorf("cfg\n got %+v\nwant %+v", c, want)
	}
	// Reference values read with numpy at hand-computed offsets
	// (token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final).
	D, HD := 64, 172
	checks := []struct {
		name      string
		got, want float32
	}{
		{"embed[0]", m.Embed[0], -0.29474878311157227},
		{"embed[1]", m.Embed[1], 0.5618956089019775},
		{"wq l1[0]", m.Layers[1].Wq[0], 0.21412323},
		{"wk l4 last", m.Layers[4].Wk[len(m.Layers[4].Wk)-1], -0.26513016},
		{"w1(gate) l2[3,5]", m.Layers[2].Wgate[3*D+5], -0.059888054},
		{"w2(down) l0[1,2]", m.Layers[0].Wdown[1*HD+2], 0.19513175},
		{"w3(up) l3[0]", m.Layers[3].Wup[0], 0.1470759},
		{"final[0]", m.Norm[0], 2.4583089351654053},
		{"final[1]", m.Norm[1], 1.3673226833343506},
		{"rms_att l4[7]", m.Layers[4].AttnNorm[7], 1.1392556},
		{"rms_ffn l1[1]", m.Layers[1].MLPNorm[1], 0.6588639},
		{"wv l0[0]", m.Layers[0].Wv[0], 0.091125436},
		{"wo l2[5,6]", m.Layers[2].Wo[5*D+6], -0.06685185},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if &m.LMHead[0] != &m.Embed[0] {
		t.Error("shared classifier does not alias Embed")
	}
	// The file size matches the header exactly (README: 1,056,540 bytes).
	b, _ := os.ReadFile(p)
	h, err := ParseLlama2CHeader(p, b, int64(len(b)))
	if err != nil || len(b) != 1056540 || Llama2CHeaderSize+4*h.NumFloats() != 1056540 {
		t.Errorf("size %d, header %+v, %v", len(b), h, err)
	}
	// Truncated and padded files are rejected with the file name.
	dir := t.TempDir()
	cut := filepath.Join(dir, "cut.bin")
	os.WriteFile(cut, b[:len(b)-4], 0o644)
	if _, err := LoadLlama2C(cut); err == nil || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), cut) {
		t.Errorf("truncated: %v", err)
	}
	long := filepath.Join(dir, "long.bin")
	os.WriteFile(long, append(append([]byte(nil), b...), 0, 0, 0, 0), 0o644)
	if _, err := LoadLlama2C(long); err == nil || !strings.Contains(err.Error(), long) {
		t.Errorf("padded: %v", err)
	}
	short := filepath.Join(dir, "short.bin")
	os.WriteFile(short, b[:10], 0o644)
	if _, err := LoadLlama2C(short); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("short: %v", err)
	}
}

// llama2cImage builds a synthetic llama2.c file (values 0.001*i).
func llama2cImage(dim, hidden, layers, heads, kv, vocab, seq int) []byte {
	h := Llama2CHeader{Dim: dim, HiddenDim: hidden, Layers: layers, Heads: heads, KVHeads: kv, Vocab: vocab, SeqLen: seq, Shared: vocab > 0}
	if vocab < 0 {
		h.Vocab = -vocab
	}
	b := make([]byte, 28+4*h.NumFloats())
	for i, v := range []int{dim, hidden, layers, heads, kv, vocab, seq} {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(v)))
	}
	return b
}

func TestLlama2CUnshared(t *testing.T) {
	dir := t.TempDir()
	b := llama2cImage(16, 24, 2, 4, 2, -10, 8)
	// Mark the classifier's first value.
	n := len(b)
	binary.LittleEndian.PutUint32(b[n-10*16*4:], 0x3f800000)
	p := filepath.Join(dir, "m.bin")
	os.WriteFile(p, b, 0o644)
	m, err := LoadLlama2C(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cfg.Tied || m.Cfg.Vocab != 10 || len(m.LMHead) != 160 || m.LMHead[0] != 1 || &m.LMHead[0] == &m.Embed[0] {
		t.Errorf("unshared: %+v head[0]=%v", m.Cfg, m.LMHead[0])
	}
}

func TestLlama2CHeaderErrors(t *testing.T) {
	cases := []struct {
		v    [7]int
		want string
	}{
		{[7]int{0, 1, 1, 1, 1, 1, 1}, "dim"},
		{[7]int{16, 24, 2, 3, 3, 10, 8}, "divisible"},
		{[7]int{16, 24, 2, 4, 3, 10, 8}, "multiple"},
		{[7]int{16, 24, 2, 4, 8, 10, 8}, "multiple"},
		{[7]int{16, 24, 2, 16, 16, 10, 8}, "odd"},
		{[7]int{1 << 20, 1 << 20, 1 << 20, 1, 1, 10, 8}, "byte model"},
		{[7]int{16, 24, 2, 4, 2, -2147483648, 8}, "vocab_size"},
	}
	for _, c := range cases {
		b := make([]byte, 28)
		for i, v := range c.v {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(v)))
		}
		_, err := ParseLlama2CHeader("ck.bin", b, 1<<20)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "ck.bin") {
			t.Errorf("%v: %v", c.v, err)
		}
	}
}

func FuzzLlama2cHeader(f *testing.F) {
	f.Add(llama2cImage(16, 24, 2, 4, 2, 10, 8)[:28], int64(28+4*Llama2CHeader{Dim: 16, HiddenDim: 24, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 10, SeqLen: 8, Shared: true}.NumFloats()))
	f.Add(llama2cImage(16, 24, 2, 4, 2, -10, 8)[:28], int64(1000))
	f.Add(llama2cImage(64, 172, 5, 8, 4, 512, 512)[:28], int64(1056540))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		h, err := ParseLlama2CHeader("fuzz", b, size)
		if err != nil {
			return
		}
		if h.Dim <= 0 || h.Heads <= 0 || h.KVHeads <= 0 || h.Dim%h.Heads != 0 || h.Heads%h.KVHeads != 0 || h.HeadSize()%2 != 0 {
			t.Fatalf("accepted bad header %+v", h)
		}
		if size != Llama2CHeaderSize+4*h.NumFloats() {
			t.Fatalf("size %d accepted for %+v", size, h)
		}
	})
}

// writeHF writes a checkpoint folder from a config.json text and tensors.
func writeHF(t *testing.T, cfg string, ts []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tinyTensors(skip string, override map[string][]int64) []safetensors.Tensor {
	H, V, I := int64(8), int64(5), int64(6)
	shapes := []struct {
		n string
		s []int64
	}{
		{"model.embed_tokens.weight", []int64{V, H}},
		{"model.layers.0.input_layernorm.weight", []int64{H}},
		{"model.layers.0.self_attn.q_proj.weight", []int64{H, H}},
		{"model.layers.0.self_attn.k_proj.weight", []int64{4, H}},
		{"model.layers.0.self_attn.v_proj.weight", []int64{4, H}},
		{"model.layers.0.self_attn.o_proj.weight", []int64{H, H}},
		{"model.layers.0.post_attention_layernorm.weight", []int64{H}},
		{"model.layers.0.mlp.gate_proj.weight", []int64{I, H}},
		{"model.layers.0.mlp.up_proj.weight", []int64{I, H}},
		{"model.layers.0.mlp.down_proj.weight", []int64{H, I}},
		{"model.norm.weight", []int64{H}},
		{"lm_head.weight", []int64{V, H}},
	}
	var ts []safetensors.Tensor
	for _, s := range shapes {
		if s.n == skip {
			continue
		}
		shape := s.s
		if o, ok := override[s.n]; ok {
			shape = o
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		ts = append(ts, safetensors.Tensor{Name: s.n, DType: safetensors.F32, Shape: shape, Data: make([]float32, n)})
	}
	return ts
}

const tinyCfg = `{"architectures":["LlamaForCausalLM"],"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":6,"vocab_size":5`

func TestLoadHFErrors(t *testing.T) {
	if _, err := LoadHF(writeHF(t, tinyCfg+"}", tinyTensors("", nil))); err != nil {
		t.Fatalf("valid tiny model: %v", err)
	}
	for _, name := range []string{"model.layers.0.self_attn.v_proj.weight", "lm_head.weight", "model.norm.weight", "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"} {
		dir := writeHF(t, tinyCfg+"}", tinyTensors(name, nil))
		_, err := LoadHF(dir)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), filepath.Join(dir, "model.safetensors")) {
			t.Errorf("missing %s: %v", name, err)
		}
	}
	// Tied: lm_head may be absent.
	if _, err := LoadHF(writeHF(t, tinyCfg+`,"tie_word_embeddings":true}`, tinyTensors("lm_head.weight", nil))); err != nil {
		t.Errorf("tied without lm_head: %v", err)
	}
	// Shapes that disagree with the config.
	dir := writeHF(t, tinyCfg+"}", tinyTensors("", map[string][]int64{"model.layers.0.mlp.down_proj.weight": {8, 5}}))
	if _, err := LoadHF(dir); err == nil || !strings.Contains(err.Error(), "down_proj") {
		t.Errorf("bad down shape: %v", err)
	}
	dir = writeHF(t, tinyCfg+"}", tinyTensors("", map[string][]int64{"model.layers.0.self_attn.k_proj.weight": {8, 8}, "model.layers.0.self_attn.v_proj.weight": {8, 8}}))
	if _, err := LoadHF(dir); err == nil || !strings.Contains(err.Error(), "layer 0") {
		t.Errorf("kv heads mismatch: %v", err)
	}
	dir = writeHF(t, tinyCfg+"}", tinyTensors("", map[string][]int64{"model.layers.0.self_attn.q_proj.weight": {6, 8}}))
	if _, err := LoadHF(dir); err == nil || !strings.Contains(err.Error(), "head_dim") {
		t.Errorf("q rows not multiple of head_dim: %v", err)
	}
	// Qwen2 needs q/k/v biases.
	dir = writeHF(t, strings.Replace(tinyCfg, "Llama", "Qwen2", 1)+"}", tinyTensors("", nil))
	if _, err := LoadHF(dir); err == nil || !strings.Contains(err.Error(), "q_proj.bias") {
		t.Errorf("qwen2 without bias: %v", err)
	}
	if _, err := LoadHF(t.TempDir()); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty dir: %v", err)
	}
}
