package model

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/darwinlm/darwinlm-go/safetensors"
	"github.com/darwinlm/darwinlm-go/torchbin"
)

// LoadHF loads a Hugging Face checkpoint folder: config.json plus
// model.safetensors or model.safetensors.index.json and its shards, or, when
// the folder holds neither, PyTorch's pytorch_model.bin or
// pytorch_model.bin.index.json and its shards (package torchbin). Tensors
// are converted to float32. Per-layer widths are read from the tensor shapes
// and checked against config.json (including darwinlm_layer_widths).
func LoadHF(dir string) (*Model, error) {
	cfg, widths, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	set, err := openWeights(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	l := &hfLoader{dir: dir, set: set}
	m := &Model{Cfg: cfg}
	H, D := cfg.Hidden, cfg.HeadDim

	// Embeddings: the tensor itself, or the tensor __metadata__ aliases it to.
	embName := EmbedName
	if _, _, ok := set.Shape(embName); !ok {
		if alias, ok := set.Metadata(embName); ok {
			embName = alias
		} else if cfg.Tied {
			if _, _, ok := set.Shape(LMHeadName); ok {
				embName = LMHeadName
			}
		}
	}
	if m.Embed, err = l.get(embName, false, int64(cfg.Vocab), int64(H)); err != nil {
		return nil, err
	}
	if cfg.Tied {
		m.LMHead = m.Embed
	} else if m.LMHead, err = l.get(LMHeadName, false, int64(cfg.Vocab), int64(H)); err != nil {
		return nil, fmt.Errorf("%w (config.json has tie_word_embeddings false)", err)
	}
	if m.Norm, err = l.get(NormName, false, int64(H)); err != nil {
		return nil, err
	}
	m.Layers = make([]Layer, cfg.Layers)
	for i := range m.Layers {
		want := cfg.DenseWidths()
		if widths != nil {
			want = widths[i]
		}
		ly := &m.Layers[i]
		p := LayerPrefix(i)
		// Widths from the tensor shapes.
		rows := func(name string, optional bool) (int, bool, error) {
			shape, file, ok := set.Shape(p + name)
			if !ok {
				if optional {
					return 0, false, nil
				}
				return 0, false, fmt.Errorf("%s: missing tensor %s%s", l.where(), p, name)
			}
			if len(shape) != 2 || shape[1] != int64(H) {
				return 0, false, fmt.Errorf("%s: tensor %s%s has shape %v, want [rows, %d]", file, p, name, shape, H)
			}
			return int(shape[0]), true, nil
		}
		// Attention may be pruned away entirely (then its tensors may be absent).
		attnOpt := want.Heads == 0
		qr, hasQ, err := rows(LayerTensors[TWq].Name, attnOpt)
		if err != nil {
			return nil, err
		}
		kr, _, err := rows(LayerTensors[TWk].Name, attnOpt || !hasQ)
		if err != nil {
			return nil, err
		}
		if qr%D != 0 || kr%D != 0 {
			return nil, fmt.Errorf("%s: layer %d: q_proj rows %d / k_proj rows %d are not multiples of head_dim %d", l.where(), i, qr, kr, D)
		}
		ly.Heads, ly.KVHeads = qr/D, kr/D
		mlpOpt := want.Intermediate == 0
		ir, _, err := rows(LayerTensors[TWgate].Name, mlpOpt)
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
		present := map[Module]bool{ModNorm: true, ModAttn: ly.Heads > 0, ModMLP: ly.Inter > 0}
		biased := map[Module]bool{ModAttn: cfg.AttnBias, ModMLP: cfg.MLPBias}
		dst := ly.Tensors()
		for t, spec := range LayerTensors {
			// Weights of a present sublayer are required; q/k/v biases with
			// attention_bias and MLP biases with mlp_bias; o_proj's bias never.
			required := present[spec.Module]
			if spec.Bias {
				required = required && biased[spec.Module] && LayerTensor(t) != TBo
			}
			v, err := l.get(p+spec.Name, !required, spec.Shape(cfg, ly.Heads, ly.KVHeads, ly.Inter)...)
			if err != nil {
				return nil, err
			}
			// Empty tensors of a pruned-away sublayer are kept as nil (its
			// output bias is kept as found).
			if !present[spec.Module] && LayerTensor(t) != TBo && LayerTensor(t) != TBdown {
				v = nil
			}
			*dst[t] = v
		}
	}
	if err := m.Validate(dir); err != nil {
		return nil, err
	}
	return m, nil
}

type hfLoader struct {
	dir string
	set weightSet
}

func (l *hfLoader) where() string { return l.set.Where() }

// get loads a tensor as float32 and checks its shape. A missing optional
// tensor gives nil.
func (l *hfLoader) get(name string, optional bool, shape ...int64) ([]float32, error) {
	got, file, ok := l.set.Shape(name)
	if !ok {
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: missing tensor %s", l.where(), name)
	}
	if !slices.Equal(got, shape) {
		return nil, fmt.Errorf("%s: tensor %s has shape %v, want %v", file, name, got, shape)
	}
	return l.set.Float32(name)
}

// weightSet is a checkpoint's tensors, whatever the file format.
type weightSet interface {
	// Shape returns a tensor's shape and the file holding it.
	Shape(name string) ([]int64, string, bool)
	Float32(name string) ([]float32, error)
	// Metadata is safetensors' __metadata__ (none for PyTorch files).
	Metadata(key string) (string, bool)
	// Where names the checkpoint in errors.
	Where() string
	Close() error
}

// openWeights opens the safetensors checkpoint of dir, or its PyTorch one
// when there is no safetensors file or index.
func openWeights(dir string) (weightSet, error) {
	hasST := false
	for _, n := range []string{"model.safetensors", safetensors.IndexName} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			hasST = true
		}
	}
	if !hasST && torchbin.HasCheckpoint(dir) {
		set, err := torchbin.OpenDir(dir)
		if err != nil {
			return nil, err
		}
		return torchSet{set}, nil
	}
	if !hasST {
		return nil, fmt.Errorf("model %s holds none of model.safetensors, %s, %s, %s", dir, safetensors.IndexName, torchbin.SingleName, torchbin.IndexName)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	return stSet{set}, nil
}

type stSet struct{ *safetensors.Set }

func (s stSet) Shape(name string) ([]int64, string, bool) {
	t, f, ok := s.Lookup(name)
	if !ok {
		return nil, "", false
	}
	return t.Shape, f.Path, true
}

func (s stSet) Float32(name string) ([]float32, error) {
	v, _, err := s.Set.Float32(name)
	return v, err
}

func (s stSet) Where() string {
	if len(s.Files) == 1 {
		return s.Files[0].Path
	}
	return filepath.Join(s.Dir, safetensors.IndexName)
}

type torchSet struct{ *torchbin.Set }

func (s torchSet) Shape(name string) ([]int64, string, bool) {
	t, f, ok := s.Lookup(name)
	if !ok {
		return nil, "", false
	}
	return t.Shape, f.Path, true
}

func (s torchSet) Float32(name string) ([]float32, error) {
	_, f, ok := s.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%s: missing tensor %s", s.Where(), name)
	}
	v, _, err := f.Float32(name)
	return v, err
}

func (s torchSet) Metadata(string) (string, bool) { return "", false }

func (s torchSet) Where() string {
	if len(s.Files) == 1 {
		return s.Files[0].Path
	}
	return filepath.Join(s.Dir, torchbin.IndexName)
}
