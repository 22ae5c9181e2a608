package model

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// Open loads a model and its tokenizer. spec is an hf: id (resolved through
// package hub; it may name a file in the repo), a local Hugging Face folder,
// or a llama2.c .bin checkpoint. tokenizerPath, when not empty, names the
// tokenizer file or folder; otherwise the HF folder itself is used, or for
// llama2.c a sibling tokenizer.bin / tok*.bin whose vocabulary size matches
// the model's.
func Open(spec, tokenizerPath string) (*Model, tokenizer.Tokenizer, error) {
	path := spec
	if strings.HasPrefix(spec, hub.ModelPrefix) {
		p, err := hub.ResolveModel(spec)
		if err != nil {
			return nil, nil, err
		}
		path = p
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", spec, err)
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "config.json")); err != nil {
			run, note, rerr := ResolveRunDir(path)
			if rerr != nil {
				return nil, nil, fmt.Errorf("model %s: %w", spec, rerr)
			}
			if note != "" {
				fmt.Fprintln(Notes, note)
			}
			path = run
		}
		m, err := LoadHF(path)
		if err != nil {
			return nil, nil, err
		}
		if err := checkFinite(m, path); err != nil {
			return nil, nil, err
		}
		src := tokenizerPath
		if src == "" {
			src = path
		}
		tok, err := tokenizer.Load(src)
		if err != nil {
			if tokenizerPath == "" {
				return nil, nil, fmt.Errorf("no tokenizer found for %s; pass --tokenizer (%v)", spec, err)
			}
			return nil, nil, fmt.Errorf("tokenizer %s: %w", tokenizerPath, err)
		}
		if tok.VocabSize() > m.Cfg.Vocab {
			return nil, nil, fmt.Errorf("tokenizer %s has %d tokens, more than the model %s's vocab_size %d", src, tok.VocabSize(), spec, m.Cfg.Vocab)
		}
		return m, tok, nil
	}
	if strings.HasSuffix(path, ".safetensors") {
		return nil, nil, fmt.Errorf("model %s: pass the folder holding config.json, not the .safetensors file", spec)
	}
	if isZip(path) {
		return nil, nil, fmt.Errorf("model %s is a PyTorch (torch.save) checkpoint: pass the folder holding config.json and pytorch_model.bin, not the file", spec)
	}
	m, err := LoadLlama2C(path)
	if err != nil {
		return nil, nil, err
	}
	if err := checkFinite(m, path); err != nil {
		return nil, nil, err
	}
	var tok tokenizer.Tokenizer
	if tokenizerPath != "" {
		if tok, err = tokenizer.Load(tokenizerPath); err != nil {
			return nil, nil, fmt.Errorf("tokenizer %s: %w", tokenizerPath, err)
		}
		if tok.VocabSize() != m.Cfg.Vocab {
			return nil, nil, fmt.Errorf("tokenizer %s has %d tokens but the llama2.c model %s has vocab_size %d", tokenizerPath, tok.VocabSize(), spec, m.Cfg.Vocab)
		}
		return m, tok, nil
	}
	tok, err = siblingTokenizer(path, m.Cfg.Vocab)
	if err != nil {
		return nil, nil, fmt.Errorf("no tokenizer found for %s; pass --tokenizer (%v)", spec, err)
	}
	return m, tok, nil
}

// siblingTokenizer looks beside a llama2.c checkpoint for tokenizer.bin or
// tok*.bin with the given vocabulary size.
func siblingTokenizer(ckpt string, vocab int) (tokenizer.Tokenizer, error) {
	dir := filepath.Dir(ckpt)
	cands, _ := filepath.Glob(filepath.Join(dir, "tok*.bin"))
	sort.Strings(cands)
	// tokenizer.bin first, then tok<N>.bin with N = vocab, then the rest.
	rank := func(p string) int {
		switch filepath.Base(p) {
		case "tokenizer.bin":
			return 0
		case fmt.Sprintf("tok%d.bin", vocab):
			return 1
		}
		return 2
	}
	sort.SliceStable(cands, func(i, j int) bool { return rank(cands[i]) < rank(cands[j]) })
	var why []string
	for _, c := range cands {
		if c == ckpt {
			continue
		}
		t, err := tokenizer.Load(c)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		if t.VocabSize() == vocab {
			return t, nil
		}
		why = append(why, fmt.Sprintf("%s has %d tokens, the model %d", c, t.VocabSize(), vocab))
	}
	if len(why) == 0 {
		return nil, errors.New("no tokenizer.bin or tok*.bin in " + dir)
	}
	return nil, errors.New(strings.Join(why, "; "))
}

// Notes receives the notes Open writes for a human (e.g. that a training run
// without a final model was opened at its latest checkpoint).
var Notes io.Writer = os.Stderr

// ResolveRunDir maps the output folder of a training run (darwinlm train
// --out DIR) to a model folder: DIR/final when the run finished, else the
// checkpoint DIR/latest names, with a note saying so. A folder that is
// neither a model nor a run gives an error that says what was looked for.
func ResolveRunDir(dir string) (path, note string, err error) {
	has := func(p string) bool { _, err := os.Stat(filepath.Join(p, "config.json")); return err == nil }
	if has(dir) {
		return dir, "", nil
	}
	if final := filepath.Join(dir, "final"); has(final) {
		return final, "", nil
	}
	if b, err := os.ReadFile(filepath.Join(dir, "latest")); err == nil {
		name := strings.TrimSpace(string(b))
		ck := filepath.Join(dir, name)
		if name != "" && !strings.ContainsAny(name, "/\\") && has(ck) {
			return ck, fmt.Sprintf("note: %s is a training run without a final model; using its latest checkpoint %s", dir, ck), nil
		}
		return "", "", fmt.Errorf("folder %s is a training run whose latest checkpoint %q holds no model (config.json)", dir, name)
	}
	return "", "", fmt.Errorf("folder %s has no config.json: neither a Hugging Face checkpoint nor a training run folder (with final/ or latest)", dir)
}

// checkFinite names the first tensor holding a NaN or an infinity: such
// weights make every output NaN, far from where the cause is.
func checkFinite(m *Model, where string) error {
	bad := func(name string, t []float32) error {
		for i, v := range t {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("model %s: tensor %s holds %v at element %d; the weights are corrupt", where, name, v, i)
			}
		}
		return nil
	}
	if err := bad("model.embed_tokens.weight", m.Embed); err != nil {
		return err
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, t := range []struct {
			n string
			s []float32
		}{
			{"input_layernorm.weight", l.AttnNorm}, {"self_attn.q_proj.weight", l.Wq}, {"self_attn.k_proj.weight", l.Wk},
			{"self_attn.v_proj.weight", l.Wv}, {"self_attn.o_proj.weight", l.Wo}, {"self_attn.q_proj.bias", l.Bq},
			{"self_attn.k_proj.bias", l.Bk}, {"self_attn.v_proj.bias", l.Bv}, {"self_attn.o_proj.bias", l.Bo},
			{"post_attention_layernorm.weight", l.MLPNorm}, {"mlp.gate_proj.weight", l.Wgate}, {"mlp.up_proj.weight", l.Wup},
			{"mlp.down_proj.weight", l.Wdown}, {"mlp.gate_proj.bias", l.Bgate}, {"mlp.up_proj.bias", l.Bup},
			{"mlp.down_proj.bias", l.Bdown},
		} {
			if err := bad(p+t.n, t.s); err != nil {
				return err
			}
		}
	}
	if err := bad("model.norm.weight", m.Norm); err != nil {
		return err
	}
	if !m.Cfg.Tied {
		return bad("lm_head.weight", m.LMHead)
	}
	return nil
}

// isZip reports whether a file starts like a zip archive (torch.save's
// format; a llama2.c checkpoint starts with its int32 header).
func isZip(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == "PK\x03\x04"
}
