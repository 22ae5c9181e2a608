// Package train holds the training side of darwinlm: a train-mode forward
// pass that saves activations, the backward pass through every op of the
// Llama block (nn/*_backward.go), losses (next-token cross-entropy, KL to a
// teacher over the full vocabulary or the teacher's top-k), optimizers
// (AdamW, SGD), gradient clipping, learning-rate schedules, data packing,
// and checkpoint / resume with bitwise-reproducible results.
//
// Entry points: Run is the whole training loop (data, budget, schedule,
// checkpoints, resume, Parquet log) behind `darwinlm train` and the
// experiments' post-training; FineTuner fine-tunes candidate after
// candidate in memory with one step per sequence (SelectionPreset: the
// reference's training-aware selection), reusing its buffers across widths,
// and Pool runs several FineTuners at once, one per core; TrainDistill,
// CacheTeacher, KL and SparseKLCached take cached teacher logits (full or
// top-k) instead of running the teacher every step.
//
// Everything runs on a backend.Device (nn.DeviceFor of the backend; the
// CPU device nn.Host calls the host kernels, so results are bitwise those
// of the host code): the weights are resident, activations live in an
// arena of device buffers reused from step to step (Graph), and the
// FineTuner keeps its gradients and AdamW moments on the device.
//
// The graph is generic over the element type: Graph[float32] calls the
// float32 forward ops of package nn and the backend's matrix products, so its
// logits are bitwise those of model.Forward; Graph[float64] runs the same
// code in double precision, which the finite-difference checks use.
//
// Gradient checks (honest tolerances): float32 central differences cannot
// reach 1e-5 relative, so the analytic gradients are checked in float64 —
// the same backward code instantiated with float64 — against central
// differences of the float64 forward (graph_test.go, nn/ops_backward_test.go;
// worst relative error ≈1e-6 against the 1e-5 bound). The float32
// instantiation is then compared with the float64 one (normwise 1e-4, float32
// accuracy), and one float32 SGD step on TinyStories-656K is compared with an
// independent float64 forward + hand-written backward (sgd_ref_test.go).
//
// Memory: activations are kept per layer (inputs, normed inputs, q/k/v, the
// attention output, gate/up/silu·up); attention probabilities are recomputed
// in the backward pass (bitwise equal to the forward's) unless SaveProbs is
// set, so a 7B-shaped layer at 2048 tokens needs O(T·width) activations.
package train

import (
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// LayerW holds the parameters of one decoder layer: model.LayerOf, so that
// training runs the model's own layer forward.
type LayerW[F nn.Float] = model.LayerOf[F]

// Weights holds every parameter of a model. When Cfg.Tied, LMHead and Embed
// are the same slice (for gradients too, so both uses accumulate into it).
type Weights[F nn.Float] struct {
	Cfg    model.Config
	Embed  []F
	Layers []LayerW[F]
	Norm   []F
	LMHead []F
	// Rope returns the rotary tables grown to n positions (shared with the
	// model so float32 training uses exactly the inference tables).
	Rope func(n int) *nn.Rope
}

// Tensor is a named parameter (Hugging Face name).
type Tensor[F nn.Float] struct {
	Name string
	Data []F
}

// FromModel wraps the parameters of m without copying: training updates m
// in place.
func FromModel(m *model.Model) *Weights[float32] {
	w := &Weights[float32]{Cfg: m.Cfg, Embed: m.Embed, Norm: m.Norm, LMHead: m.LMHead, Rope: m.Rope}
	w.Layers = append([]LayerW[float32](nil), m.Layers...) // the same tensors
	if m.Cfg.Tied {
		w.LMHead = w.Embed
	}
	return w
}

// Convert copies w into element type G (used to build float64 twins).
func Convert[G, F nn.Float](w *Weights[F]) *Weights[G] {
	return mapWeights(w, func(s []F) []G {
		if s == nil {
			return nil
		}
		o := make([]G, len(s))
		for i, v := range s {
			o[i] = G(v)
		}
		return o
	})
}

// ZeroLike returns zeroed tensors of the shapes of w (nil stays nil, a tied
// head shares the embedding's gradient).
func ZeroLike[F nn.Float](w *Weights[F]) *Weights[F] {
	return mapWeights(w, func(s []F) []F {
		if s == nil {
			return nil
		}
		return make([]F, len(s))
	})
}

func mapWeights[G, F nn.Float](w *Weights[F], f func([]F) []G) *Weights[G] {
	o := &Weights[G]{Cfg: w.Cfg, Embed: f(w.Embed), Norm: f(w.Norm), Rope: w.Rope}
	if w.Cfg.Tied {
		o.LMHead = o.Embed
	} else {
		o.LMHead = f(w.LMHead)
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		ol := LayerW[G]{Heads: l.Heads, KVHeads: l.KVHeads, Inter: l.Inter, KVMap: l.KVMap}
		dst := ol.Tensors()
		for t, s := range l.Tensors() {
			*dst[t] = f(*s)
		}
		o.Layers = append(o.Layers, ol)
	}
	return o
}

// Tensors lists the parameters in a fixed order with Hugging Face names.
// Empty tensors (removed sublayers) and the tied head are left out.
func (w *Weights[F]) Tensors() []Tensor[F] {
	var out []Tensor[F]
	model.EachNamed(w.Embed, w.Layers, w.Norm, w.LMHead, w.Cfg.Tied, func(name string, s []F) {
		if len(s) > 0 {
			out = append(out, Tensor[F]{name, s})
		}
	})
	return out
}

// Zero clears every tensor of w.
func (w *Weights[F]) Zero() {
	for _, t := range w.Tensors() {
		clear(t.Data)
	}
}

// NumParams counts the elements of Tensors().
func (w *Weights[F]) NumParams() int {
	n := 0
	for _, t := range w.Tensors() {
		n += len(t.Data)
	}
	return n
}
