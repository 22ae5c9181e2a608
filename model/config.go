package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
)

// LayerWidth is one layer's widths in the darwinlm_layer_widths extension of
// config.json, which lets pruned checkpoints (layers narrower than the dense
// config) round-trip.
type LayerWidth struct {
	Heads        int `json:"heads"`
	KVHeads      int `json:"kv_heads"`
	Intermediate int `json:"intermediate"`
	// KVMap is the layer's query-head to K/V-head map (Layer.KVMap), stored
	// under KVMapsKey; nil for the standard grouping.
	KVMap []int `json:"-"`
}

// SameWidths reports whether w and o have the same head and MLP widths
// (ignoring the KV maps).
func (w LayerWidth) SameWidths(o LayerWidth) bool {
	return w.Heads == o.Heads && w.KVHeads == o.KVHeads && w.Intermediate == o.Intermediate
}

// WidthsKey is the config.json key of the per-layer widths extension.
const WidthsKey = "darwinlm_layer_widths"

// KVMapsKey is the config.json key, beside WidthsKey, of the per-layer
// query-head to K/V-head maps of pruned GQA layers: a list with one entry
// per layer, null for the standard grouping or a list of K/V head indices,
// one per query head.
const KVMapsKey = "darwinlm_kv_maps"

// hfConfig mirrors the config.json fields we read. Pointers tell absent from
// zero.
type hfConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	IntermediateSize      *int            `json:"intermediate_size"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	HiddenAct             *string         `json:"hidden_act"`
	BOS                   json.RawMessage `json:"bos_token_id"`
	EOS                   json.RawMessage `json:"eos_token_id"`
	LayerWidths           []LayerWidth    `json:"darwinlm_layer_widths"`
	KVMaps                [][]int         `json:"darwinlm_kv_maps"`
}

var archs = map[string]string{
	"LlamaForCausalLM": "llama",
	"Qwen2ForCausalLM": "qwen2",
}

// LoadConfig reads and parses a config.json file.
func LoadConfig(path string) (Config, []LayerWidth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, err
	}
	return ParseConfig(path, b)
}

// ParseConfig parses a Hugging Face config.json for LlamaForCausalLM or
// Qwen2ForCausalLM. It returns the dense config and, when the file carries
// darwinlm_layer_widths, the per-layer widths (nil otherwise). name is used
// in errors.
func ParseConfig(name string, data []byte) (Config, []LayerWidth, error) {
	fail := func(format string, a ...any) (Config, []LayerWidth, error) {
		return Config{}, nil, fmt.Errorf("%s: "+format, append([]any{name}, a...)...)
	}
	var h hfConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&h); err != nil {
		return fail("config.json: %v", err)
	}
	var c Config
	switch {
	case len(h.Architectures) > 0:
		for _, a := range h.Architectures {
			if arch, ok := archs[a]; ok {
				c.Arch = arch
				break
			}
		}
		if c.Arch == "" {
			return fail("architectures %s unsupported (want LlamaForCausalLM or Qwen2ForCausalLM)", strings.Join(h.Architectures, ", "))
		}
	case h.ModelType == "llama" || h.ModelType == "qwen2":
		c.Arch = h.ModelType
	default:
		return fail("no supported architectures entry (model_type %q); want LlamaForCausalLM or Qwen2ForCausalLM", h.ModelType)
	}
	req := func(field string, p *int, allowZero bool) (int, error) {
		if p == nil {
			return 0, fmt.Errorf("%s: field %s is missing", name, field)
		}
		if *p < 0 || (*p == 0 && !allowZero) || *p > 1<<30 {
			return 0, fmt.Errorf("%s: field %s = %d is out of range", name, field, *p)
		}
		return *p, nil
	}
	var err error
	if c.Hidden, err = req("hidden_size", h.HiddenSize, false); err != nil {
		return Config{}, nil, err
	}
	if c.Layers, err = req("num_hidden_layers", h.NumHiddenLayers, true); err != nil {
		return Config{}, nil, err
	}
	if c.Heads, err = req("num_attention_heads", h.NumAttentionHeads, false); err != nil {
		return Config{}, nil, err
	}
	if c.Intermediate, err = req("intermediate_size", h.IntermediateSize, false); err != nil {
		return Config{}, nil, err
	}
	if c.Vocab, err = req("vocab_size", h.VocabSize, false); err != nil {
		return Config{}, nil, err
	}
	c.KVHeads = c.Heads
	if h.NumKeyValueHeads != nil {
		if c.KVHeads, err = req("num_key_value_heads", h.NumKeyValueHeads, false); err != nil {
			return Config{}, nil, err
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fail("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if h.HeadDim != nil {
		if c.HeadDim, err = req("head_dim", h.HeadDim, false); err != nil {
			return Config{}, nil, err
		}
	} else {
		if c.Hidden%c.Heads != 0 {
			return fail("hidden_size %d is not divisible by num_attention_heads %d and head_dim is not given", c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim%2 != 0 {
		return fail("head_dim %d must be even for RoPE", c.HeadDim)
	}
	c.MaxSeq = 2048
	if h.MaxPositionEmbeddings != nil {
		if c.MaxSeq, err = req("max_position_embeddings", h.MaxPositionEmbeddings, false); err != nil {
			return Config{}, nil, err
		}
	}
	c.RopeTheta = 10000
	if h.RopeTheta != nil {
		c.RopeTheta = *h.RopeTheta
		if !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0) {
			return fail("field rope_theta = %v is out of range", c.RopeTheta)
		}
	}
	c.RMSEps = 1e-6
	if h.RMSNormEps != nil {
		c.RMSEps = *h.RMSNormEps
		if !(c.RMSEps >= 0) || c.RMSEps > 1 {
			return fail("field rms_norm_eps = %v is out of range", c.RMSEps)
		}
	}
	if h.HiddenAct != nil && *h.HiddenAct != "silu" {
		return fail("field hidden_act = %q unsupported (only silu)", *h.HiddenAct)
	}
	if c.RopeScaling, err = parseRopeScaling(name, h.RopeScaling); err != nil {
		return Config{}, nil, err
	}
	c.Rope = RopeHalf
	c.Tied = h.TieWordEmbeddings != nil && *h.TieWordEmbeddings
	c.AttnBias = h.AttentionBias != nil && *h.AttentionBias
	if c.Arch == "qwen2" {
		c.AttnBias = true // Qwen2 always has q/k/v biases
	}
	c.MLPBias = h.MLPBias != nil && *h.MLPBias
	if c.BOS, err = tokenID(name, "bos_token_id", h.BOS); err != nil {
		return Config{}, nil, err
	}
	if c.EOS, err = tokenID(name, "eos_token_id", h.EOS); err != nil {
		return Config{}, nil, err
	}
	var widths []LayerWidth
	if h.KVMaps != nil && len(h.KVMaps) != c.Layers {
		return fail("%s has %d entries, num_hidden_layers is %d", KVMapsKey, len(h.KVMaps), c.Layers)
	}
	if h.LayerWidths != nil {
		if len(h.LayerWidths) != c.Layers {
			return fail("%s has %d entries, num_hidden_layers is %d", WidthsKey, len(h.LayerWidths), c.Layers)
		}
		for i, w := range h.LayerWidths {
			if w.Heads < 0 || w.KVHeads < 0 || w.Intermediate < 0 || w.Heads > 1<<20 || w.KVHeads > 1<<20 || w.Intermediate > 1<<30 {
				return fail("%s[%d] has a width out of range: %+v", WidthsKey, i, w)
			}
			if w.Heads > 0 && w.KVHeads == 0 {
				return fail("%s[%d]: heads %d with no kv_heads", WidthsKey, i, w.Heads)
			}
			if w.Heads > 0 && w.Heads%w.KVHeads != 0 && (h.KVMaps == nil || h.KVMaps[i] == nil) {
				return fail("%s[%d]: heads %d is not a multiple of kv_heads %d and %s gives no map", WidthsKey, i, w.Heads, w.KVHeads, KVMapsKey)
			}
			if w.Heads == 0 && w.KVHeads != 0 {
				return fail("%s[%d]: kv_heads %d with no heads", WidthsKey, i, w.KVHeads)
			}
		}
		widths = h.LayerWidths
	}
	if h.KVMaps != nil {
		if widths == nil {
			widths = make([]LayerWidth, c.Layers)
			for i := range widths {
				widths[i] = c.DenseWidths()
			}
		}
		for i, km := range h.KVMaps {
			if km == nil {
				continue
			}
			if err := checkKVMap(widths[i].Heads, widths[i].KVHeads, km); err != nil {
				return fail("%s[%d] (layer with %d heads, %d KV heads): %v", KVMapsKey, i, widths[i].Heads, widths[i].KVHeads, err)
			}
			widths[i].KVMap = km
		}
	}
	return c, widths, nil
}

func parseRopeScaling(name string, raw json.RawMessage) (*RopeScaling, error) {
	if len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: field rope_scaling must be null or an object: %v", name, err)
	}
	typ := ""
	for _, k := range []string{"rope_type", "type"} {
		if v, ok := m[k]; ok {
			if err := json.Unmarshal(v, &typ); err != nil {
				return nil, fmt.Errorf("%s: field rope_scaling.%s must be a string", name, k)
			}
			break
		}
	}
	switch typ {
	case "default":
		return nil, nil
	case "llama3":
	case "":
		return nil, fmt.Errorf("%s: field rope_scaling has no rope_type", name)
	default:
		return nil, fmt.Errorf("%s: field rope_scaling.rope_type %q is unsupported (only default and llama3)", name, typ)
	}
	var rs RopeScaling
	if err := json.Unmarshal(raw, &struct {
		*RopeScaling
		Type string `json:"type"`
	}{RopeScaling: &rs}); err != nil {
		return nil, fmt.Errorf("%s: field rope_scaling: %v", name, err)
	}
	rs.Type = "llama3"
	if !(rs.Factor >= 1) || !(rs.LowFreqFactor > 0) || !(rs.HighFreqFactor > rs.LowFreqFactor) || rs.OriginalMaxPositionEmbeddings <= 0 ||
		math.IsInf(rs.Factor, 0) || math.IsInf(rs.HighFreqFactor, 0) {
		return nil, fmt.Errorf("%s: field rope_scaling (llama3) needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0, got %+v", name, rs)
	}
	return &rs, nil
}

// tokenID reads an id that may be absent/null (-1), an int, or a list of
// ints (the first is used).
func tokenID(name, field string, raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return -1, nil
	}
	var id int
	if err := json.Unmarshal(raw, &id); err == nil {
		if id < 0 {
			return 0, fmt.Errorf("%s: field %s = %d is negative", name, field, id)
		}
		return id, nil
	}
	var ids []int
	if err := json.Unmarshal(raw, &ids); err != nil {
		return 0, fmt.Errorf("%s: field %s must be an int or a list of ints", name, field)
	}
	if len(ids) == 0 {
		return -1, nil
	}
	if ids[0] < 0 {
		return 0, fmt.Errorf("%s: field %s = %d is negative", name, field, ids[0])
	}
	return ids[0], nil
}

// DenseWidths are the widths every layer has in the unpruned model.
func (c Config) DenseWidths() LayerWidth {
	return LayerWidth{Heads: c.Heads, KVHeads: c.KVHeads, Intermediate: c.Intermediate}
}

// ConfigJSON renders a config.json for cfg. widths (one per layer) are
// written as darwinlm_layer_widths when any differs from the dense widths or
// has a KV map, and the maps as darwinlm_kv_maps when any is set.
// extra keys are added as given (used to record conversions).
func ConfigJSON(c Config, widths []LayerWidth, extra map[string]any) ([]byte, error) {
	arch, modelType := "LlamaForCausalLM", "llama"
	if c.Arch == "qwen2" {
		arch, modelType = "Qwen2ForCausalLM", "qwen2"
	}
	m := map[string]any{
		"architectures":           []string{arch},
		"model_type":              modelType,
		"hidden_act":              "silu",
		"hidden_size":             c.Hidden,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"head_dim":                c.HeadDim,
		"intermediate_size":       c.Intermediate,
		"vocab_size":              c.Vocab,
		"max_position_embeddings": c.MaxSeq,
		"rope_theta":              c.RopeTheta,
		"rms_norm_eps":            c.RMSEps,
		"tie_word_embeddings":     c.Tied,
		"attention_bias":          c.AttnBias,
		"mlp_bias":                c.MLPBias,
		"torch_dtype":             "float32",
	}
	if c.BOS >= 0 {
		m["bos_token_id"] = c.BOS
	} else {
		m["bos_token_id"] = nil
	}
	if c.EOS >= 0 {
		m["eos_token_id"] = c.EOS
	} else {
		m["eos_token_id"] = nil
	}
	if c.RopeScaling != nil {
		rs := *c.RopeScaling
		m["rope_scaling"] = map[string]any{
			"rope_type": rs.Type, "factor": rs.Factor, "low_freq_factor": rs.LowFreqFactor,
			"high_freq_factor": rs.HighFreqFactor, "original_max_position_embeddings": rs.OriginalMaxPositionEmbeddings,
		}
	} else {
		m["rope_scaling"] = nil
	}
	dense := c.DenseWidths()
	var maps [][]int
	for _, w := range widths {
		if w.KVMap != nil {
			maps = make([][]int, len(widths))
			for i, w := range widths {
				maps[i] = w.KVMap
			}
			m[KVMapsKey] = maps
			break
		}
	}
	for _, w := range widths {
		if !w.SameWidths(dense) || maps != nil {
			m[WidthsKey] = widths
			break
		}
	}
	for k, v := range extra {
		m[k] = v
	}
	// encoding/json sorts map keys, so the output is deterministic.
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
