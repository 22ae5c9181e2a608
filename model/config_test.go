package model

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/hub"
)

func mirrorDir(t testing.TB) string {
	t.Helper()
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR is not set")
	}
	m := hub.Mirror()
	if _, err := os.Stat(m); err != nil {
		t.Skipf("mirror %s: %v", m, err)
	}
	return m
}

// Values from shared/hf/README.md and the config.json files' published text.
func TestMirrorConfigs(t *testing.T) {
	m := mirrorDir(t)
	cases := []struct {
		repo string
		want Config
	}{
		{"meta-llama/Llama-2-7b-hf", Config{Arch: "llama", Hidden: 4096, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 128, Intermediate: 11008,
			Vocab: 32000, MaxSeq: 4096, RopeTheta: 10000, RMSEps: 1e-5, BOS: 1, EOS: 2}},
		{"meta-llama/Llama-3.1-8B", Config{Arch: "llama", Hidden: 4096, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Intermediate: 14336,
			Vocab: 128256, MaxSeq: 131072, RopeTheta: 500000, RMSEps: 1e-5, BOS: 128000, EOS: 128001,
			RopeScaling: &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}},
		{"Qwen/Qwen2.5-14B-Instruct", Config{Arch: "qwen2", Hidden: 5120, Layers: 48, Heads: 40, KVHeads: 8, HeadDim: 128, Intermediate: 13824,
			Vocab: 152064, MaxSeq: 32768, RopeTheta: 1e6, RMSEps: 1e-6, AttnBias: true, BOS: 151643, EOS: 151645}},
		{"HuggingFaceTB/SmolLM2-135M", Config{Arch: "llama", Hidden: 576, Layers: 30, Heads: 9, KVHeads: 3, HeadDim: 64, Intermediate: 1536,
			Vocab: 49152, MaxSeq: 8192, RopeTheta: 100000, RMSEps: 1e-5, Tied: true, BOS: 0, EOS: 0}},
		{"raincandy-u/TinyStories-656K", Config{Arch: "llama", Hidden: 128, Layers: 2, Heads: 8, KVHeads: 4, HeadDim: 16, Intermediate: 384,
			Vocab: 2048, MaxSeq: 512, RopeTheta: 10000, RMSEps: 1e-6, Tied: true, BOS: 1, EOS: 2}},
	}
	for _, c := range cases {
		got, widths, err := LoadConfig(filepath.Join(m, "models", c.repo, "config.json"))
		if err != nil {
			t.Errorf("%s: %v", c.repo, err)
			continue
		}
		if widths != nil {
			t.Errorf("%s: widths %v", c.repo, widths)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.repo, got, c.want)
		}
	}
	p := filepath.Join(m, "models/openai-community/gpt2/config.json")
	_, _, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), "GPT2LMHeadModel") || !strings.Contains(err.Error(), "unsupported") || !strings.Contains(err.Error(), p) {
		t.Errorf("gpt2 error = %v", err)
	}
}

const baseCfg = `{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":96,"vocab_size":100`

func TestConfigErrors(t *testing.T) {
	cases := []struct{ extra, want string }{
		{`,"num_key_value_heads":3}`, "not a multiple"},
		{`,"hidden_size":66}`, "not divisible"},
		{`,"rope_scaling":{"rope_type":"yarn","factor":4}}`, "rope_scaling.rope_type"},
		{`,"rope_scaling":{"type":"linear","factor":4}}`, "rope_scaling.rope_type"},
		{`,"rope_scaling":{"rope_type":"llama3","factor":0}}`, "rope_scaling"},
		{`,"rope_scaling":5}`, "rope_scaling"},
		{`,"hidden_act":"gelu"}`, "hidden_act"},
		{`,"hidden_size":"64"}`, "hidden_size"},
		{`,"vocab_size":0}`, "vocab_size"},
		{`,"bos_token_id":"x"}`, "bos_token_id"},
		{`,"eos_token_id":-3}`, "eos_token_id"},
		{`,"darwinlm_layer_widths":[{"heads":4,"kv_heads":4,"intermediate":96}]}`, WidthsKey},
		{`,"darwinlm_layer_widths":[{"heads":4,"kv_heads":3,"intermediate":96},{"heads":4,"kv_heads":4,"intermediate":96}]}`, WidthsKey + "[0]"},
		{`,"darwinlm_layer_widths":[{"heads":4,"kv_heads":4,"intermediate":-1},{"heads":4,"kv_heads":4,"intermediate":96}]}`, WidthsKey + "[0]"},
		{`,"head_dim":7}`, "head_dim"},
		// KV maps: wrong count, wrong length, out of range, an unread K/V head,
		// a map on a layer without attention, ragged heads without a map.
		{`,"num_key_value_heads":2,"darwinlm_kv_maps":[null]}`, KVMapsKey},
		{`,"num_key_value_heads":2,"darwinlm_kv_maps":[[0,1],null]}`, KVMapsKey + "[0]"},
		{`,"num_key_value_heads":2,"darwinlm_kv_maps":[null,[0,1,2,1]]}`, KVMapsKey + "[1]"},
		{`,"num_key_value_heads":2,"darwinlm_kv_maps":[[0,0,0,0],null]}`, "read by no attention head"},
		{`,"num_key_value_heads":2,"darwinlm_layer_widths":[{"heads":0,"kv_heads":0,"intermediate":96},{"heads":4,"kv_heads":2,"intermediate":96}],"darwinlm_kv_maps":[[0],null]}`, KVMapsKey + "[0]"},
		{`,"num_key_value_heads":2,"darwinlm_layer_widths":[{"heads":3,"kv_heads":2,"intermediate":96},{"heads":4,"kv_heads":2,"intermediate":96}]}`, WidthsKey + "[0]"},
		{`,"rope_theta":0}`, "rope_theta"},
	}
	for _, c := range cases {
		_, _, err := ParseConfig("cfg.json", []byte(baseCfg+c.extra))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cfg.json") {
			t.Errorf("%s: error = %v, want mention of %q", c.extra, err, c.want)
		}
	}
	for _, missing := range []string{"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"} {
		s := strings.Replace(baseCfg+"}", `"`+missing+`"`, `"x_`+missing+`"`, 1)
		if _, _, err := ParseConfig("cfg.json", []byte(s)); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("missing %s: %v", missing, err)
		}
	}
	if _, _, err := ParseConfig("cfg.json", []byte(`{"architectures":["MistralForCausalLM"]}`)); err == nil || !strings.Contains(err.Error(), "MistralForCausalLM") {
		t.Errorf("mistral: %v", err)
	}
}

func TestConfigVariants(t *testing.T) {
	c, w, err := ParseConfig("c", []byte(baseCfg+`,"head_dim":32,"num_key_value_heads":2,"eos_token_id":[7,8],"bos_token_id":null,"rope_scaling":{"rope_type":"default"},"mlp_bias":true,"attention_bias":true,"darwinlm_layer_widths":[{"heads":2,"kv_heads":1,"intermediate":10},{"heads":0,"kv_heads":0,"intermediate":0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim != 32 || c.KVHeads != 2 || c.EOS != 7 || c.BOS != -1 || c.RopeScaling != nil || !c.MLPBias || !c.AttnBias || c.Tied || c.RopeTheta != 10000 || c.RMSEps != 1e-6 || c.MaxSeq != 2048 {
		t.Errorf("config %+v", c)
	}
	if !reflect.DeepEqual(w, []LayerWidth{{2, 1, 10, nil}, {0, 0, 0, nil}}) {
		t.Errorf("widths %v", w)
	}
	// A KV map without widths applies to the dense widths.
	_, w, err = ParseConfig("m", []byte(baseCfg+`,"num_key_value_heads":2,"darwinlm_kv_maps":[null,[1,1,0,0]]}`))
	if err != nil || !reflect.DeepEqual(w, []LayerWidth{{4, 2, 96, nil}, {4, 2, 96, []int{1, 1, 0, 0}}}) {
		t.Errorf("kv maps without widths: %v %v", w, err)
	}
	// Qwen2 always has q/k/v biases, even when attention_bias is absent.
	q, _, err := ParseConfig("q", []byte(strings.Replace(baseCfg, "LlamaForCausalLM", "Qwen2ForCausalLM", 1)+"}"))
	if err != nil || !q.AttnBias || q.Arch != "qwen2" {
		t.Errorf("qwen2: %+v %v", q, err)
	}
	// model_type alone is accepted.
	l, _, err := ParseConfig("l", []byte(strings.Replace(baseCfg, `"architectures":["LlamaForCausalLM"]`, `"model_type":"llama"`, 1)+"}"))
	if err != nil || l.Arch != "llama" {
		t.Errorf("model_type: %+v %v", l, err)
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	c := Config{Arch: "llama", Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Intermediate: 96, Vocab: 100, MaxSeq: 512,
		RopeTheta: 500000, RMSEps: 1e-5, Tied: true, BOS: 1, EOS: -1,
		RopeScaling: &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}}
	for _, widths := range [][]LayerWidth{nil, {{4, 2, 96, nil}, {4, 2, 96, nil}}, {{2, 1, 50, nil}, {0, 0, 96, nil}},
		{{3, 2, 96, []int{0, 1, 1}}, {4, 2, 96, nil}}, {{4, 2, 96, []int{1, 0, 0, 1}}, {4, 2, 96, nil}}} {
		b, err := ConfigJSON(c, widths, map[string]any{"darwinlm_note": "x"})
		if err != nil {
			t.Fatal(err)
		}
		got, gw, err := ParseConfig("rt", b)
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
		}
		dense := widths == nil || (widths[0].SameWidths(c.DenseWidths()) && widths[0].KVMap == nil)
		if dense && gw != nil {
			t.Errorf("dense widths written: %v", gw)
		}
		if !dense && !reflect.DeepEqual(gw, widths) {
			t.Errorf("widths %v, want %v", gw, widths)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(baseCfg + "}"))
	f.Add([]byte(baseCfg + `,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":8192}}`))
	f.Add([]byte(baseCfg + `,"darwinlm_layer_widths":[{"heads":2,"kv_heads":1,"intermediate":10},{"heads":0,"kv_heads":0,"intermediate":0}]}`))
	f.Add([]byte(`{"architectures":["GPT2LMHeadModel"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, w, err := ParseConfig("fuzz", b)
		if err != nil {
			return
		}
		if c.Hidden <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.Vocab <= 0 || c.Heads%c.KVHeads != 0 || c.HeadDim%2 != 0 {
			t.Fatalf("accepted bad config %+v", c)
		}
		if w != nil && len(w) != c.Layers {
			t.Fatalf("%d widths for %d layers", len(w), c.Layers)
		}
		if _, err := ConfigJSON(c, w, nil); err != nil {
			t.Fatal(err)
		}
	})
}
