// Package model holds the Llama-family decoder (Llama, Llama-3.1 rope
// scaling, Qwen2 q/k/v biases, llama2.c checkpoints) and its forward pass.
//
// Layers carry their own widths (heads, KV heads, MLP width) because
// structured pruning removes attention heads and MLP neurons physically: a
// pruned model is just a model whose layers are narrower.
//
// The forward pass runs on a backend.Device: Model.Upload makes the weights
// resident (on the CPU device the views are the model's own slices, no
// copy), and one layer forward (LayerForwardDevice) written against the
// device's operations serves inference, KV-cache decoding, shared-prefix
// segments, training and Hessian capture, with activations in an Arena of
// device buffers. The Backend-taking methods (Forward, Hidden, Step, ...)
// are thin wrappers over the device of nn.DeviceFor(be).
package model

import (
	"fmt"
	"sync"

	"github.com/darwinlm/darwinlm-go/backend"
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

// LayerT is one decoder block whose tensors are stored as T: host slices
// (LayerOf) or views of buffers resident on a device (DeviceLayer).
// Weight matrices are row-major [out × in] as in PyTorch. A layer with
// Heads == 0 has no attention (it is the identity plus the residual); one
// with Inter == 0 has no MLP. An absent tensor (an optional bias) is the
// zero T (nil slice, zero View).
//
// KVMap gives, for each of the Heads query heads, the K/V head in
// [0, KVHeads) it reads. nil means the standard grouping, head h reading
// h / (Heads/KVHeads) (then Heads must be a multiple of KVHeads). A non-nil
// map lets pruning keep any subset of a GQA model's query heads with the
// K/V heads they use (groups then have different sizes); every K/V head is
// read by at least one query head. KVMap is never written in place, so
// derived layers may share it.
type LayerT[T any] struct {
	Heads, KVHeads, Inter int
	KVMap                 []int

	AttnNorm   T // [hidden]
	Wq         T // [Heads*headDim × hidden]
	Wk, Wv     T // [KVHeads*headDim × hidden]
	Bq, Bk, Bv T // optional biases, absent when the model has none
	Wo         T // [hidden × Heads*headDim]

	MLPNorm    T // [hidden]
	Wgate, Wup T // [Inter × hidden]
	Wdown      T // [hidden × Inter]
	Bgate, Bup T // optional (mlp_bias)
	Bdown, Bo  T // optional (mlp_bias / o_proj bias)
}

// LayerOf is a decoder block with host weights of element type F (float32
// for inference; training also instantiates float64 twins for gradient
// checks).
type LayerOf[F nn.Float] = LayerT[[]F]

// DeviceLayer is a decoder block whose weights are resident on a device.
type DeviceLayer = LayerT[backend.View]

// Layer is a float32 decoder block, the one models hold.
type Layer = LayerOf[float32]

// KVHead is the K/V head query head h reads (see KVMap).
func (l *LayerT[T]) KVHead(h int) int { return nn.KVHead(h, l.Heads, l.KVHeads, l.KVMap) }

// Tensors returns pointers to the layer's 16 tensors in the order of
// LayerTensors.
func (l *LayerT[T]) Tensors() [NumLayerTensors]*T {
	return [NumLayerTensors]*T{
		&l.AttnNorm, &l.Wq, &l.Bq, &l.Wk, &l.Bk, &l.Wv, &l.Bv, &l.Wo, &l.Bo,
		&l.MLPNorm, &l.Wgate, &l.Bgate, &l.Wup, &l.Bup, &l.Wdown, &l.Bdown,
	}
}

// NumParams counts the layer's parameters.
func (l *LayerT[T]) NumParams() int64 {
	var n int64
	for _, s := range l.Tensors() {
		n += int64(tensorLen(*s))
	}
	return n
}

// tensorLen is the number of elements of a layer tensor of any storage.
func tensorLen(t any) int {
	switch v := t.(type) {
	case []float32:
		return len(v)
	case []float64:
		return len(v)
	case backend.View:
		return v.N
	}
	return 0
}

// checkKVMap checks a layer's head layout: without a map, heads must be a
// multiple of KV heads; with one, it has one entry per head, in range, and
// reads every K/V head.
func checkKVMap(heads, kvHeads int, kvMap []int) error {
	if heads == 0 {
		if kvHeads != 0 || kvMap != nil {
			return fmt.Errorf("%d KV heads (kv map %v) with no attention heads", kvHeads, kvMap)
		}
		return nil
	}
	if kvHeads <= 0 {
		return fmt.Errorf("%d attention heads with %d KV heads", heads, kvHeads)
	}
	if kvMap == nil {
		if heads%kvHeads != 0 {
			return fmt.Errorf("%d attention heads are not a multiple of %d KV heads (and there is no kv map)", heads, kvHeads)
		}
		return nil
	}
	if len(kvMap) != heads {
		return fmt.Errorf("kv map has %d entries for %d attention heads", len(kvMap), heads)
	}
	used := make([]bool, kvHeads)
	for h, g := range kvMap {
		if g < 0 || g >= kvHeads {
			return fmt.Errorf("kv map: head %d reads KV head %d, out of [0, %d)", h, g, kvHeads)
		}
		used[g] = true
	}
	for g, u := range used {
		if !u {
			return fmt.Errorf("kv map: KV head %d is read by no attention head (it should have been dropped)", g)
		}
	}
	return nil
}

// standardKVMap reports whether kvMap is the standard grouping of heads over
// kvHeads (so that it can be stored as nil).
func standardKVMap(heads, kvHeads int, kvMap []int) bool {
	if kvHeads == 0 || heads%kvHeads != 0 || len(kvMap) != heads {
		return false
	}
	for h, g := range kvMap {
		if g != h/(heads/kvHeads) {
			return false
		}
	}
	return true
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
	h := c.Hidden
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
		if err := checkKVMap(l.Heads, l.KVHeads, l.KVMap); err != nil {
			return fmt.Errorf("%s: layer %d: %v", name, i, err)
		}
		ptrs := l.Tensors()
		for t, spec := range LayerTensors {
			w := 1
			for _, n := range spec.Shape(c, l.Heads, l.KVHeads, l.Inter) {
				w *= int(n)
			}
			s := *ptrs[t]
			if w == 0 && len(s) == 0 {
				continue
			}
			if err := chk(p+spec.Name, s, w, spec.Bias); err != nil {
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
		n += m.Layers[i].NumParams()
	}
	return n
}

// Clone returns a deep copy of m: every tensor (and KV map) is copied, and a
// tied head stays tied to the copied embedding.
func (m *Model) Clone() *Model {
	cp := func(s []float32) []float32 {
		if s == nil {
			return nil
		}
		return append(make([]float32, 0, len(s)), s...)
	}
	o := &Model{Cfg: m.Cfg, Embed: cp(m.Embed), Norm: cp(m.Norm)}
	if m.Cfg.RopeScaling != nil {
		rs := *m.Cfg.RopeScaling
		o.Cfg.RopeScaling = &rs
	}
	if m.Cfg.Tied {
		o.LMHead = o.Embed
	} else {
		o.LMHead = cp(m.LMHead)
	}
	o.Layers = make([]Layer, len(m.Layers))
	for i := range m.Layers {
		l := m.Layers[i]
		dst := l.Tensors()
		for t, p := range m.Layers[i].Tensors() {
			*dst[t] = cp(*p)
		}
		if l.KVMap != nil {
			l.KVMap = append([]int(nil), l.KVMap...)
		}
		o.Layers[i] = l
	}
	return o
}

// Derive returns a new Model with its own Layers slice whose tensors all
// alias m's: a cheap base for a model that differs in a few layers. Callers
// replace whole layers (or whole tensor slices) they change and never write
// into the aliased tensors.
func (m *Model) Derive() *Model {
	o := &Model{Cfg: m.Cfg, Embed: m.Embed, Norm: m.Norm, LMHead: m.LMHead}
	o.Layers = append([]Layer(nil), m.Layers...)
	return o
}
