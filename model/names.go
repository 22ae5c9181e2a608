package model

import "fmt"

// LayerTensor indexes the 16 tensors of a decoder layer in the order of
// LayerTensors (the order of LayerOf.Tensors, of checkpoints written by
// training, and of train.Weights.Tensors).
type LayerTensor int

const (
	TAttnNorm LayerTensor = iota
	TWq
	TBq
	TWk
	TBk
	TWv
	TBv
	TWo
	TBo
	TMLPNorm
	TWgate
	TBgate
	TWup
	TBup
	TWdown
	TBdown
	NumLayerTensors
)

// Module is the sublayer a tensor belongs to.
type Module int

const (
	ModNorm Module = iota // a norm weight (kept when its sublayer is removed)
	ModAttn
	ModMLP
)

// TensorSpec describes one layer tensor: its Hugging Face name after
// "model.layers.N.", its sublayer, whether it is a bias (optional) and its
// shape for given layer widths.
type TensorSpec struct {
	Name   string
	Module Module
	Bias   bool
	shape  func(h, d, heads, kv, inter int64) []int64
}

// Shape is the tensor's shape in a layer with the given widths under c.
func (s TensorSpec) Shape(c Config, heads, kvHeads, inter int) []int64 {
	return s.shape(int64(c.Hidden), int64(c.HeadDim), int64(heads), int64(kvHeads), int64(inter))
}

// LayerTensors is the one table of the per-layer tensor names.
var LayerTensors = [NumLayerTensors]TensorSpec{
	TAttnNorm: {"input_layernorm.weight", ModNorm, false, func(h, d, q, kv, i int64) []int64 { return []int64{h} }},
	TWq:       {"self_attn.q_proj.weight", ModAttn, false, func(h, d, q, kv, i int64) []int64 { return []int64{q * d, h} }},
	TBq:       {"self_attn.q_proj.bias", ModAttn, true, func(h, d, q, kv, i int64) []int64 { return []int64{q * d} }},
	TWk:       {"self_attn.k_proj.weight", ModAttn, false, func(h, d, q, kv, i int64) []int64 { return []int64{kv * d, h} }},
	TBk:       {"self_attn.k_proj.bias", ModAttn, true, func(h, d, q, kv, i int64) []int64 { return []int64{kv * d} }},
	TWv:       {"self_attn.v_proj.weight", ModAttn, false, func(h, d, q, kv, i int64) []int64 { return []int64{kv * d, h} }},
	TBv:       {"self_attn.v_proj.bias", ModAttn, true, func(h, d, q, kv, i int64) []int64 { return []int64{kv * d} }},
	TWo:       {"self_attn.o_proj.weight", ModAttn, false, func(h, d, q, kv, i int64) []int64 { return []int64{h, q * d} }},
	TBo:       {"self_attn.o_proj.bias", ModAttn, true, func(h, d, q, kv, i int64) []int64 { return []int64{h} }},
	TMLPNorm:  {"post_attention_layernorm.weight", ModNorm, false, func(h, d, q, kv, i int64) []int64 { return []int64{h} }},
	TWgate:    {"mlp.gate_proj.weight", ModMLP, false, func(h, d, q, kv, i int64) []int64 { return []int64{i, h} }},
	TBgate:    {"mlp.gate_proj.bias", ModMLP, true, func(h, d, q, kv, i int64) []int64 { return []int64{i} }},
	TWup:      {"mlp.up_proj.weight", ModMLP, false, func(h, d, q, kv, i int64) []int64 { return []int64{i, h} }},
	TBup:      {"mlp.up_proj.bias", ModMLP, true, func(h, d, q, kv, i int64) []int64 { return []int64{i} }},
	TWdown:    {"mlp.down_proj.weight", ModMLP, false, func(h, d, q, kv, i int64) []int64 { return []int64{h, i} }},
	TBdown:    {"mlp.down_proj.bias", ModMLP, true, func(h, d, q, kv, i int64) []int64 { return []int64{h} }},
}

// Names of the tensors outside the layers.
const (
	EmbedName  = "model.embed_tokens.weight"
	NormName   = "model.norm.weight"
	LMHeadName = "lm_head.weight"
)

// LayerPrefix is the name prefix of layer i's tensors.
func LayerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// LayerTensorName is the full Hugging Face name of tensor t of layer i, e.g.
// "model.layers.3.self_attn.o_proj.weight".
func LayerTensorName(i int, t LayerTensor) string { return LayerPrefix(i) + LayerTensors[t].Name }

// EachNamed calls f with the Hugging Face name of each tensor of a model
// laid out as embed, layers, norm and head, in that order (a layer's tensors
// in LayerTensors order); the head is left out when tied. Empty tensors are
// passed too.
func EachNamed[T any](embed T, layers []LayerT[T], norm, head T, tied bool, f func(name string, t T)) {
	f(EmbedName, embed)
	for i := range layers {
		p := LayerPrefix(i)
		for t, v := range layers[i].Tensors() {
			f(p+LayerTensors[t].Name, *v)
		}
	}
	f(NormName, norm)
	if !tied {
		f(LMHeadName, head)
	}
}
