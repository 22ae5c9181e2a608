// Package model holds the Llama-family decoder (Llama, Llama-3.1 rope
// scaling, Qwen2 q/k/v biases, llama2.c checkpoints) and its forward pass.
//
// Layers carry their own widths (heads, KV heads, MLP width) because
// structured pruning removes attention heads and MLP neurons physically: a
// pruned model is just a model whose layers are narrower.
package model

import (
	"fmt"
	"sync"

	"github.com/darwinlm/darwinlm-go/nn"
)

// RopeStyle selects how RoPE pairs dimensions of a head.
type RopeStyle int

const (
	// RopeHalf is Hugging Face's rotate_half: dimension i is paired with
	// i+headDim/2.
	RopeHalf RopeStyle = iota
	// RopeInterleaved is llama2.c / Meta's original layout: dimension 2i is
	// paired with 2i+1.
	RopeInterleaved
)

func (r RopeStyle) String() string {
	if r == RopeInterleaved {
		return "interleaved"
	}
	return "half"
}

// RopeScaling is the rope_scaling block of config.json. Only "llama3" (and
// null / "default") is supported.
type RopeScaling struct {
	Type                          string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// Config describes the dense (unpruned) architecture. Per-layer widths live
// in Layer, so they can differ after pruning.
type Config struct {
	Arch         string // "llama", "qwen2" or "llama2c"
	Hidden       int
	Layers       int
	Heads        int // attention heads of the dense model
	KVHeads      int
	HeadDim      int
	Intermediate int
	Vocab        int
	MaxSeq       int
	RopeTheta    float64
	RopeScaling  *RopeScaling
	Rope         RopeStyle
	RMSEps       float64
	Tied         bool
	AttnBias     bool // q/k/v biases (Qwen2)
	MLPBias      bool
	BOS, EOS     int
}

// Layer is one decoder block. Weight matrices are row-major [out × in] as in
// PyTorch. A layer with Heads == 0 has no attention (it is the identity plus
// the residual); one with Inter == 0 has no MLP.
type Layer struct {
	Heads, KVHeads, Inter int

	AttnNorm   []float32 // [hidden]
	Wq         []float32 // [Heads*headDim × hidden]
	Wk, Wv     []float32 // [KVHeads*headDim × hidden]
	Bq, Bk, Bv []float32 // optional biases, nil when absent
	Wo         []float32 // [hidden × Heads*headDim]

	MLPNorm    []float32 // [hidden]
	Wgate, Wup []float32 // [Inter × hidden]
	Wdown      []float32 // [hidden × Inter]
	Bgate, Bup []float32 // optional (mlp_bias)
	Bdown, Bo  []float32 // optional (mlp_bias / o_proj bias)
}

// Model is a loaded decoder. When Cfg.Tied is true LMHead aliases Embed.
type Model struct {
	Cfg    Config
	Embed  []float32 // [Vocab × Hidden]
	Layers []Layer
	Norm   []float32 // [Hidden]
	LMHead []float32 // [Vocab × Hidden]

	ropeMu sync.Mutex
	rope   *nn.Rope
}

// Validate checks that every tensor has the size its layer's widths imply.
// name is used in messages (a file path or hub id).
func (m *Model) Validate(name string) error {
	c := m.Cfg
	if c.Hidden <= 0 || c.Vocab <= 0 || c.HeadDim <= 0 {
		return fmt.Errorf("%s: config: hidden_size, vocab_size and head_dim must be positive (got %d, %d, %d)", name, c.Hidden, c.Vocab, c.HeadDim)
	}
	chk := func(what string, got []float32, want int, optional bool) error {
		if optional && got == nil {
			return nil
		}
		if len(got) != want {
			return fmt.Errorf("%s: tensor %s has %d elements, want %d", name, what, len(got), want)
		}
		return nil
	}
	h, d := c.Hidden, c.HeadDim
	if err := chk("embed_tokens", m.Embed, c.Vocab*h, false); err != nil {
		return err
	}
	if err := chk("norm", m.Norm, h, false); err != nil {
		return err
	}
	if err := chk("lm_head", m.LMHead, c.Vocab*h, false); err != nil {
		return err
	}
	if len(m.Layers) != c.Layers {
		return fmt.Errorf("%s: config says num_hidden_layers=%d but %d layers were loaded", name, c.Layers, len(m.Layers))
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("layers.%d.", i)
		if l.Heads < 0 || l.KVHeads < 0 || l.Inter < 0 {
			return fmt.Errorf("%s: layer %d has negative width", name, i)
		}
		if l.Heads > 0 && (l.KVHeads == 0 || l.Heads%l.KVHeads != 0) {
			return fmt.Errorf("%s: layer %d: %d attention heads are not a multiple of %d KV heads", name, i, l.Heads, l.KVHeads)
		}
		q, kv := l.Heads*d, l.KVHeads*d
		for _, t := range []struct {
			n   string
			s   []float32
			w   int
			opt bool
		}{
			{"input_layernorm", l.AttnNorm, h, false},
			{"self_attn.q_proj.weight", l.Wq, q * h, false},
			{"self_attn.k_proj.weight", l.Wk, kv * h, false},
			{"self_attn.v_proj.weight", l.Wv, kv * h, false},
			{"self_attn.o_proj.weight", l.Wo, h * q, false},
			{"self_attn.q_proj.bias", l.Bq, q, true},
			{"self_attn.k_proj.bias", l.Bk, kv, true},
			{"self_attn.v_proj.bias", l.Bv, kv, true},
			{"self_attn.o_proj.bias", l.Bo, h, true},
			{"post_attention_layernorm", l.MLPNorm, h, false},
			{"mlp.gate_proj.weight", l.Wgate, l.Inter * h, false},
			{"mlp.up_proj.weight", l.Wup, l.Inter * h, false},
			{"mlp.down_proj.weight", l.Wdown, h * l.Inter, false},
			{"mlp.gate_proj.bias", l.Bgate, l.Inter, true},
			{"mlp.up_proj.bias", l.Bup, l.Inter, true},
			{"mlp.down_proj.bias", l.Bdown, h, true},
		} {
			if t.w == 0 && len(t.s) == 0 {
				continue
			}
			if err := chk(p+t.n, t.s, t.w, t.opt); err != nil {
				return err
			}
		}
	}
	return nil
}

// NumParams counts parameters (tied head counted once).
func (m *Model) NumParams() int64 {
	n := int64(len(m.Embed) + len(m.Norm))
	if !m.Cfg.Tied {
		n += int64(len(m.LMHead))
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, s := range [][]float32{l.AttnNorm, l.Wq, l.Wk, l.Wv, l.Bq, l.Bk, l.Bv, l.Wo, l.Bo, l.MLPNorm, l.Wgate, l.Wup, l.Wdown, l.Bgate, l.Bup, l.Bdown} {
			n += int64(len(s))
		}
	}
	return n
}
