package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Load opens a tokenizer from a file or a model folder.
//
// Files: tokenizer.json (HF), tokenizer.bin or tok*.bin (llama2.c),
// tokenizer.model (SentencePiece protobuf, or Llama-3's tiktoken text file),
// vocab.json (with merges.txt beside it). A folder is searched for
// tokenizer.json, then tokenizer.model (also original/tokenizer.model), then
// vocab.json+merges.txt, then tokenizer.bin. tokenizer_config.json and
// config.json beside the file are read when present. Errors name the file.
func Load(path string) (Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		for _, name := range []string{"tokenizer.json", "tokenizer.model", "original/tokenizer.model", "vocab.json", "tokenizer.bin"} {
			p := filepath.Join(path, name)
			if fileExists(p) {
				return loadFile(p)
			}
		}
		return nil, fmt.Errorf("%s: no tokenizer.json, tokenizer.model, vocab.json+merges.txt or tokenizer.bin", path)
	}
	return loadFile(path)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func loadFile(path string) (Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(path)
	wrap := func(err error) error { return fmt.Errorf("%s: %w", path, err) }
	side, err := readSideFiles(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(base, ".json") && base != "vocab.json":
		t, err := ParseHFJSON(data, side)
		if err != nil {
			return nil, wrap(err)
		}
		return t, nil
	case base == "vocab.json":
		merges, err := os.ReadFile(filepath.Join(filepath.Dir(path), "merges.txt"))
		if err != nil {
			return nil, wrap(fmt.Errorf("merges.txt beside it: %w", err))
		}
		t, err := ParseVocabMerges(data, merges, side)
		if err != nil {
			return nil, wrap(err)
		}
		return t, nil
	case strings.HasSuffix(base, ".bin"):
		t, err := ParseLlama2cBin(bytes.NewReader(data))
		if err != nil {
			return nil, wrap(err)
		}
		return t, nil
	case strings.HasSuffix(base, ".model"):
		// Llama-3 ships a tiktoken text file under the SentencePiece name.
		if looksLikeTiktoken(data) {
			t, err := ParseTiktoken(data, side)
			if err != nil {
				return nil, wrap(err)
			}
			return t, nil
		}
		t, err := ParseSentencePiece(data, side)
		if err != nil {
			return nil, wrap(err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%s: unknown tokenizer file type", path)
}

// readSideFiles reads tokenizer_config.json and config.json from dir (and its
// parent, for original/tokenizer.model).
func readSideFiles(dir string) (SideFiles, error) {
	var side SideFiles
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if side.TokenizerConfig == nil {
			b, err := readOptional(filepath.Join(d, "tokenizer_config.json"))
			if err != nil {
				return side, err
			}
			side.TokenizerConfig = b
		}
		if side.ModelConfig == nil {
			b, err := readOptional(filepath.Join(d, "config.json"))
			if err != nil {
				return side, err
			}
			side.ModelConfig = b
		}
		if filepath.Base(dir) != "original" {
			break
		}
	}
	return side, nil
}

func readOptional(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
