package model

import (
	"errors"
	"fmt"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/darwinlm/darwinlm-go/safetensors"
)

// Keys SaveHF adds to config.json when it converts a llama2.c (interleaved
// RoPE) model to the Hugging Face layout.
const (
	ConvertedFromKey   = "darwinlm_converted_from"
	RopePermutationKey = "darwinlm_rope_permutation"
)

// hfTokenizerFiles are copied from a tokenizer source folder when present.
var hfTokenizerFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
	"vocab.json", "merges.txt", "generation_config.json",
}

// SaveHF writes m as a Hugging Face checkpoint folder: config.json (with
// darwinlm_layer_widths when layers are pruned), model.safetensors (F32; a
// tied head is stored once, as model.embed_tokens.weight) and the tokenizer
// files of tokenizerSrc (a folder, or a single llama2.c tokenizer file; ""
// copies nothing; a llama2.c tok*.bin is stored as tokenizer.bin). Everything
// is written into a temporary folder beside dir and renamed into place; an
// existing dir is replaced only when it is empty or holds a config.json.
//
// A model with interleaved RoPE (llama2.c) is converted to the rotate-half
// layout: within each head the rows of q_proj and k_proj (and their biases)
// are permuted so that the pair (2i, 2i+1) becomes (i, i+headDim/2), as
// Hugging Face's convert_llama_weights_to_hf does. The saved model computes
// the same function; config.json records the conversion.
func SaveHF(m *Model, dir, tokenizerSrc string) (err error) {
	if err := m.Validate("model to save"); err != nil {
		return err
	}
	cfg := m.Cfg
	extra := map[string]any{}
	permute := cfg.Rope == RopeInterleaved
	if cfg.Arch == "llama2c" {
		extra[ConvertedFromKey] = "llama2c"
		cfg.Arch = "llama"
	}
	if permute {
		extra[RopePermutationKey] = "interleaved-to-half: rows of q_proj/k_proj permuted per head, (2i,2i+1) -> (i,i+head_dim/2)"
		cfg.Rope = RopeHalf
	}
	widths := make([]LayerWidth, len(m.Layers))
	for i, l := range m.Layers {
		widths[i] = LayerWidth{Heads: l.Heads, KVHeads: l.KVHeads, Intermediate: l.Inter, KVMap: l.KVMap}
	}
	cfgJSON, err := ConfigJSON(cfg, widths, extra)
	if err != nil {
		return err
	}
	H, D, V := int64(cfg.Hidden), cfg.HeadDim, int64(cfg.Vocab)
	var ts []safetensors.Tensor
	add := func(name string, data []float32, shape ...int64) {
		if data == nil {
			return
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: data})
	}
	add(EmbedName, m.Embed, V, H)
	for i := range m.Layers {
		l := &m.Layers[i]
		p := LayerPrefix(i)
		present := map[Module]bool{ModNorm: true, ModAttn: l.Heads > 0, ModMLP: l.Inter > 0}
		for t, s := range l.Tensors() {
			spec, data := LayerTensors[t], *s
			// A removed sublayer's tensors are not written, but an output
			// bias (o_proj, down_proj) found on one is.
			if !present[spec.Module] && LayerTensor(t) != TBo && LayerTensor(t) != TBdown {
				continue
			}
			if permute && data != nil {
				switch LayerTensor(t) {
				case TWq:
					data = PermuteInterleavedToHalf(data, l.Heads, D, int(H))
				case TWk:
					data = PermuteInterleavedToHalf(data, l.KVHeads, D, int(H))
				case TBq:
					data = PermuteInterleavedToHalf(data, l.Heads, D, 1)
				case TBk:
					data = PermuteInterleavedToHalf(data, l.KVHeads, D, 1)
				}
			}
			add(p+spec.Name, data, spec.Shape(cfg, l.Heads, l.KVHeads, l.Inter)...)
		}
	}
	add(NormName, m.Norm, H)
	if !cfg.Tied {
		add(LMHeadName, m.LMHead, V, H)
	}

	dir = filepath.Clean(dir)
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("save %s: exists and is not a folder", dir)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) > 0 {
			if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
				return fmt.Errorf("save %s: folder is not empty and holds no config.json; refusing to replace it", dir)
			}
		}
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err = os.Chmod(tmp, atomicfile.DirMode()); err != nil { // MkdirTemp makes it 0700
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err = atomicfile.WriteSync(filepath.Join(tmp, "config.json"), cfgJSON); err != nil {
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if err = safetensors.WriteFile(filepath.Join(tmp, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if tokenizerSrc != "" {
		if err = copyTokenizer(tokenizerSrc, tmp, cfg.Vocab); err != nil {
			return fmt.Errorf("save %s: %w", dir, err)
		}
	}
	// Swap the folder into place.
	old := ""
	if _, e := os.Stat(dir); e == nil {
		old = tmp + ".old"
		if err = os.Rename(dir, old); err != nil {
			return fmt.Errorf("save %s: %w", dir, err)
		}
	}
	if err = os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("save %s: %w", dir, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	if d, e := os.Open(parent); e == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// PermuteInterleavedToHalf reorders the rows of a [heads*headDim × cols]
// matrix so that, within each head, row 2i+j moves to j*headDim/2+i: the
// interleaved RoPE pair (2i, 2i+1) becomes the rotate-half pair
// (i, i+headDim/2). This is the permute of convert_llama_weights_to_hf
// (view(heads, headDim/2, 2, cols).transpose(1, 2)).
func PermuteInterleavedToHalf(w []float32, heads, headDim, cols int) []float32 {
	return permuteRoPERows(w, heads, headDim, cols, true)
}

// PermuteHalfToInterleaved is the inverse of PermuteInterleavedToHalf.
func PermuteHalfToInterleaved(w []float32, heads, headDim, cols int) []float32 {
	return permuteRoPERows(w, heads, headDim, cols, false)
}

func permuteRoPERows(w []float32, heads, headDim, cols int, toHalf bool) []float32 {
	out := make([]float32, len(w))
	half := headDim / 2
	for h := 0; h < heads; h++ {
		base := h * headDim
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				inter, rot := (base+2*i+j)*cols, (base+j*half+i)*cols
				if toHalf {
					copy(out[rot:rot+cols], w[inter:inter+cols])
				} else {
					copy(out[inter:inter+cols], w[rot:rot+cols])
				}
			}
		}
	}
	return out
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTokenizer copies the tokenizer files of src (a folder or one file)
// into dst. A llama2.c tokenizer (tokenizer.bin, tok*.bin) becomes
// tokenizer.bin; in a folder, tok<vocab>.bin is preferred.
func copyTokenizer(src, dst string, vocab int) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("tokenizer source: %w", err)
	}
	if !st.IsDir() {
		name := filepath.Base(src)
		if filepath.Ext(name) == ".bin" {
			name = "tokenizer.bin"
		}
		return copyFile(src, filepath.Join(dst, name))
	}
	n := 0
	for _, f := range hfTokenizerFiles {
		p := filepath.Join(src, f)
		if _, err := os.Stat(p); err == nil {
			if err := copyFile(p, filepath.Join(dst, f)); err != nil {
				return err
			}
			n++
		}
	}
	// llama2.c tokenizers.
	var bins []string
	for _, pat := range []string{"tokenizer.bin", "tok*.bin"} {
		m, _ := filepath.Glob(filepath.Join(src, pat))
		bins = append(bins, m...)
	}
	sort.SliceStable(bins, func(i, j int) bool {
		return filepath.Base(bins[i]) == fmt.Sprintf("tok%d.bin", vocab) && filepath.Base(bins[j]) != fmt.Sprintf("tok%d.bin", vocab)
	})
	if len(bins) > 0 {
		if err := copyFile(bins[0], filepath.Join(dst, "tokenizer.bin")); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("tokenizer source " + src + " holds no tokenizer files")
	}
	return nil
}
