package model

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/darwinlm/darwinlm-go/safetensors"
)

// LoadHF loads a Hugging Face checkpoint folder: config.json plus
// model.safetensors or model.safetensors.index.json and its shards. Tensors
// are converted to float32. Per-layer widths are read from the tensor shapes
// and checked against config.json (including darwinlm_layer_widths).
func LoadHF(dir string) (*Model, error) {
	cfg, widths, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	l := &hfLoader{dir: dir, set: set}
	m := &Model{Cfg: cfg}
	H, D := cfg.Hidden, cfg.HeadDim

	// Embeddings: the tensor itself, or the tensor __metadata__ aliases it to.
	embName := "model.embed_tokens.weight"
	if _, _, ok := set.Lookup(embName); !ok {
		if alias, ok := set.Metadata(embName); ok {
			embName = alias
		} else if cfg.Tied {
			if _, _, ok := set.Lookup("lm_head.weight"); ok {
				embName = "lm_head.weight"
			}
		}
	}
	if m.Embed, err = l.get(embName, false, int64(cfg.Vocab), int64(H)); err != nil {
		return nil, err
	}
	if cfg.Tied {
		m.LMHead = m.Embed
	} else if m.LMHead, err = l.get("lm_head.weight", false, int64(cfg.Vocab), int64(H)); err != nil {
		return nil, fmt.Errorf("%w (config.json has tie_word_embeddings false)", err)
	}
	if m.Norm, err = l.get("model.norm.weight", false, int64(H)); err != nil {
		return nil, err
	}
	m.Layers = make([]Layer, cfg.Layers)
	for i := range m.Layers {
		want := cfg.DenseWidths()
		if widths != nil {
			want = widths[i]
		}
		ly := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		// Widths from the tensor shapes.
		rows := func(name string, optional bool) (int, bool, error) {
			t, f, ok := set.Lookup(p + name)
			if !ok {
				if optional {
					return 0, false, nil
				}
				return 0, false, fmt.Errorf("%s: missing tensor %s%s", l.where(), p, name)
			}
			if len(t.Shape) != 2 || t.Shape[1] != int64(H) {
				return 0, false, fmt.Errorf("%s: tensor %s%s has shape %v, want [rows, %d]", f.Path, p, name, t.Shape, H)
			}
			return int(t.Shape[0]), true, nil
		}
		// Attention may be pruned away entirely (then its tensors may be absent).
		attnOpt := want.Heads == 0
		qr, hasQ, err := rows("self_attn.q_proj.weight", attnOpt)
		if err != nil {
			return nil, err
		}
		kr, _, err := rows("self_attn.k_proj.weight", attnOpt || !hasQ)
		if err != nil {
			return nil, err
		}
		if qr%D != 0 || kr%D != 0 {
			return nil, fmt.Errorf("%s: layer %d: q_proj rows %d / k_proj rows %d are not multiples of head_dim %d", l.where(), i, qr, kr, D)
		}
		ly.Heads, ly.KVHeads = qr/D, kr/D
		mlpOpt := want.Intermediate == 0
		ir, _, err := rows("mlp.gate_proj.weight", mlpOpt)
		if err != nil {
			return nil, err
		}
		ly.Inter = ir
		got := LayerWidth{Heads: ly.Heads, KVHeads: ly.KVHeads, Intermediate: ly.Inter}
		ly.KVMap = want.KVMap
		if !got.SameWidths(want) {
			src := "the dense config"
			if widths != nil {
				src = WidthsKey
			}
			return nil, fmt.Errorf("%s: layer %d: tensor shapes give %d heads, %d KV heads, intermediate %d, but %s says %d, %d, %d",
				l.where(), i, got.Heads, got.KVHeads, got.Intermediate, src, want.Heads, want.KVHeads, want.Intermediate)
		}
		q, kv, I := int64(ly.Heads*D), int64(ly.KVHeads*D), int64(ly.Inter)
		h := int64(H)
		type spec struct {
			dst   *[]float32
			name  string
			opt   bool
			shape []int64
		}
		attnReq := ly.Heads > 0
		mlpReq := ly.Inter > 0
		specs := []spec{
			{&ly.AttnNorm, "input_layernorm.weight", false, []int64{h}},
			{&ly.MLPNorm, "post_attention_layernorm.weight", false, []int64{h}},
			{&ly.Wq, "self_attn.q_proj.weight", !attnReq, []int64{q, h}},
			{&ly.Wk, "self_attn.k_proj.weight", !attnReq, []int64{kv, h}},
			{&ly.Wv, "self_attn.v_proj.weight", !attnReq, []int64{kv, h}},
			{&ly.Wo, "self_attn.o_proj.weight", !attnReq, []int64{h, q}},
			{&ly.Bq, "self_attn.q_proj.bias", !(attnReq && cfg.AttnBias), []int64{q}},
			{&ly.Bk, "self_attn.k_proj.bias", !(attnReq && cfg.AttnBias), []int64{kv}},
			{&ly.Bv, "self_attn.v_proj.bias", !(attnReq && cfg.AttnBias), []int64{kv}},
			{&ly.Bo, "self_attn.o_proj.bias", true, []int64{h}},
			{&ly.Wgate, "mlp.gate_proj.weight", !mlpReq, []int64{I, h}},
			{&ly.Wup, "mlp.up_proj.weight", !mlpReq, []int64{I, h}},
			{&ly.Wdown, "mlp.down_proj.weight", !mlpReq, []int64{h, I}},
			{&ly.Bgate, "mlp.gate_proj.bias", !(mlpReq && cfg.MLPBias), []int64{I}},
			{&ly.Bup, "mlp.up_proj.bias", !(mlpReq && cfg.MLPBias), []int64{I}},
			{&ly.Bdown, "mlp.down_proj.bias", !(mlpReq && cfg.MLPBias), []int64{h}},
		}
		for _, s := range specs {
			v, err := l.get(p+s.name, s.opt, s.shape...)
			if err != nil {
				return nil, err
			}
			*s.dst = v
		}
		// Empty tensors of a pruned-away block are kept as nil.
		if ly.Heads == 0 {
			ly.Wq, ly.Wk, ly.Wv, ly.Wo, ly.Bq, ly.Bk, ly.Bv = nil, nil, nil, nil, nil, nil, nil
		}
		if ly.Inter == 0 {
			ly.Wgate, ly.Wup, ly.Wdown, ly.Bgate, ly.Bup = nil, nil, nil, nil, nil
		}
	}
	if err := m.Validate(dir); err != nil {
		return nil, err
	}
	return m, nil
}

type hfLoader struct {
	dir string
	set *safetensors.Set
}

func (l *hfLoader) where() string {
	if len(l.set.Files) == 1 {
		return l.set.Files[0].Path
	}
	return filepath.Join(l.dir, safetensors.IndexName)
}

// get loads a tensor as float32 and checks its shape. A missing optional
// tensor gives nil.
func (l *hfLoader) get(name string, optional bool, shape ...int64) ([]float32, error) {
	t, f, ok := l.set.Lookup(name)
	if !ok {
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: missing tensor %s", l.where(), name)
	}
	if !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %s has shape %v, want %v", f.Path, name, t.Shape, shape)
	}
	v, _, err := f.Float32(name)
	return v, err
}
