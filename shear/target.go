package shear

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/darwinlm/darwinlm-go/model"
)

// Shape is a uniform architecture: every layer has the same widths.
// KVHeads is what the parameter count assumes; after shrinking, a GQA
// model keeps the K/V heads its surviving query heads read (see Shrink).
type Shape struct {
	Layers  int `json:"layers"`
	Hidden  int `json:"hidden"`
	Heads   int `json:"heads"`
	KVHeads int `json:"kv_heads"`
	Inter   int `json:"intermediate"`
}

func (s Shape) String() string {
	return fmt.Sprintf("%d layers, hidden %d, %d heads (%d KV), MLP %d", s.Layers, s.Hidden, s.Heads, s.KVHeads, s.Inter)
}

// BaseShape is the shape of a dense model; a model whose layers differ
// (already pruned) is refused, since the gates assume uniform layers.
func BaseShape(m *model.Model) (Shape, error) {
	c := m.Cfg
	s := Shape{Layers: len(m.Layers), Hidden: c.Hidden, Heads: c.Heads, KVHeads: c.KVHeads, Inter: c.Intermediate}
	for i, l := range m.Layers {
		if l.Heads != c.Heads || l.KVHeads != c.KVHeads || l.Inter != c.Intermediate {
			return Shape{}, fmt.Errorf("layer %d has widths (%d heads, %d KV, MLP %d), not the dense (%d, %d, %d): shear needs a dense model",
				i, l.Heads, l.KVHeads, l.Inter, c.Heads, c.KVHeads, c.Intermediate)
		}
	}
	if s.Layers == 0 {
		return Shape{}, fmt.Errorf("the model has no layers")
	}
	return s, nil
}

// Params counts the parameters of a model of config c (vocabulary, head
// dimension, biases, tying) reshaped to s, by the arithmetic of
// paper-notes (e): per layer q = o = h·n_q·d, k = v = h·n_kv·d, MLP 3·h·I,
// two norms of h; plus the embedding V·h, an untied head V·h and the final
// norm h.
func Params(c model.Config, s Shape) int64 {
	h, d, I := int64(s.Hidden), int64(c.HeadDim), int64(s.Inter)
	q, kv := int64(s.Heads)*d, int64(s.KVHeads)*d
	layer := 2*h*q + 2*h*kv + 3*h*I + 2*h
	if c.AttnBias {
		layer += q + 2*kv
	}
	if c.MLPBias {
		layer += 2*I + h
	}
	n := int64(s.Layers)*layer + int64(c.Vocab)*h + h
	if !c.Tied {
		n += int64(c.Vocab) * h
	}
	return n
}

// kvFor is the number of K/V heads n query heads need at least when the
// base groups heads/kv query heads per K/V head.
func kvFor(base Shape, n int) int {
	g := base.Heads / base.KVHeads
	return (n + g - 1) / g
}

// Check validates a target against the base shape and head dimension d.
// name says where the target came from (a file or flag), for messages.
func (t Shape) Check(base Shape, d int, name string) error {
	switch {
	case t.Layers <= 0:
		return fmt.Errorf("%s: the target keeps %d layers; it must keep at least one", name, t.Layers)
	case t.Hidden <= 0 || t.Heads <= 0 || t.Inter <= 0:
		return fmt.Errorf("%s: target widths must be positive (hidden %d, heads %d, intermediate %d)", name, t.Hidden, t.Heads, t.Inter)
	case t.Hidden%d != 0:
		return fmt.Errorf("%s: the head dimension %d does not divide the target hidden size %d", name, d, t.Hidden)
	case t.Layers > base.Layers || t.Hidden > base.Hidden || t.Heads > base.Heads || t.Inter > base.Inter || t.KVHeads > base.KVHeads:
		return fmt.Errorf("%s: the target (%v) is larger than the model (%v) in some dimension", name, t, base)
	case t == base:
		return fmt.Errorf("%s: the target equals the model's shape (%v): nothing to prune", name, base)
	}
	return nil
}

// TargetFromConfig reads a target shape from a config.json (hidden_size,
// num_hidden_layers, num_attention_heads, intermediate_size, and optionally
// num_key_value_heads, head_dim, vocab_size, which must agree with the
// model). It checks the target against the model before any compute.
func TargetFromConfig(path string, c model.Config, base Shape) (Shape, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Shape{}, fmt.Errorf("--target-config: %w", err)
	}
	var f struct {
		Hidden  *int `json:"hidden_size"`
		Layers  *int `json:"num_hidden_layers"`
		Heads   *int `json:"num_attention_heads"`
		KVHeads *int `json:"num_key_value_heads"`
		Inter   *int `json:"intermediate_size"`
		HeadDim *int `json:"head_dim"`
		Vocab   *int `json:"vocab_size"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&f); err != nil {
		return Shape{}, fmt.Errorf("%s: %v", path, err)
	}
	for _, r := range []struct {
		name string
		v    *int
	}{{"hidden_size", f.Hidden}, {"num_hidden_layers", f.Layers}, {"num_attention_heads", f.Heads}, {"intermediate_size", f.Inter}} {
		if r.v == nil {
			return Shape{}, fmt.Errorf("%s: field %s is missing", path, r.name)
		}
	}
	t := Shape{Layers: *f.Layers, Hidden: *f.Hidden, Heads: *f.Heads, Inter: *f.Inter}
	if f.HeadDim != nil && *f.HeadDim != c.HeadDim {
		return Shape{}, fmt.Errorf("%s: head_dim %d differs from the model's %d (shear keeps the head dimension)", path, *f.HeadDim, c.HeadDim)
	}
	if f.Vocab != nil && *f.Vocab != c.Vocab {
		return Shape{}, fmt.Errorf("%s: vocab_size %d differs from the model's %d", path, *f.Vocab, c.Vocab)
	}
	if t.Heads > 0 {
		t.KVHeads = kvFor(base, t.Heads)
		if base.KVHeads == base.Heads {
			t.KVHeads = t.Heads
		}
	}
	if f.KVHeads != nil {
		t.KVHeads = *f.KVHeads
	}
	if err := t.Check(base, c.HeadDim, path); err != nil {
		return Shape{}, err
	}
	return t, nil
}

// TargetFromParams picks a uniform shape of about n parameters that keeps
// the head dimension and the ratio of the MLP to the hidden size: all
// layers are kept and the hidden size (a multiple of the head dimension,
// heads = hidden/d) is the one whose count is closest to n; only when even
// one head per layer is too many are layers removed. K/V heads are counted
// as the fewest that serve the query heads (heads/group).
func TargetFromParams(n int64, c model.Config, base Shape) (Shape, error) {
	dense := Params(c, base)
	if n >= dense {
		return Shape{}, fmt.Errorf("--target-params %d is not below the model's %d parameters", n, dense)
	}
	if n <= 0 {
		return Shape{}, fmt.Errorf("--target-params %d must be positive", n)
	}
	d := c.HeadDim
	shape := func(layers, heads int) Shape {
		h := heads * d
		s := Shape{Layers: layers, Hidden: h, Heads: heads, KVHeads: kvFor(base, heads),
			Inter: int(math.Round(float64(h) * float64(base.Inter) / float64(base.Hidden)))}
		if base.KVHeads == base.Heads {
			s.KVHeads = heads
		}
		return s
	}
	maxHeads := min(base.Heads, base.Hidden/d)
	var best Shape
	bestGap := int64(math.MaxInt64)
	for layers := base.Layers; layers >= 1; layers-- {
		for heads := 1; heads <= maxHeads; heads++ {
			s := shape(layers, heads)
			if s == base || s.Inter < 1 {
				continue
			}
			gap := Params(c, s) - n
			if gap < 0 {
				gap = -gap
			}
			if gap < bestGap {
				best, bestGap = s, gap
			}
		}
		if Params(c, shape(layers, 1)) <= n {
			break // this depth can reach n; fewer layers are not needed
		}
	}
	if best.Layers == 0 {
		return Shape{}, fmt.Errorf("--target-params %d: no shape found", n)
	}
	if err := best.Check(base, d, "--target-params"); err != nil {
		return Shape{}, err
	}
	return best, nil
}
