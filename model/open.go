package model

import (
	"errors"
	"fmt"
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
			return nil, nil, fmt.Errorf("model %s: folder %s has no config.json (not a Hugging Face checkpoint)", spec, path)
		}
		m, err := LoadHF(path)
		if err != nil {
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
	m, err := LoadLlama2C(path)
	if err != nil {
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
