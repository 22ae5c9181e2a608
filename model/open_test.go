package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	mir := mirrorDir(t)
	t.Setenv("DARWINLM_OFFLINE", "1")
	m, tok, err := Open("hf:raincandy-u/TinyStories-656K", "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Cfg.Vocab != 2048 || tok.VocabSize() > 2048 || tok.VocabSize() == 0 {
		t.Errorf("vocab model %d tokenizer %d", m.Cfg.Vocab, tok.VocabSize())
	}
	ck := stories260K(t)
	m, tok, err = Open(ck, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 512 || m.Cfg.Arch != "llama2c" {
		t.Errorf("stories260K: tokenizer %d arch %s", tok.VocabSize(), m.Cfg.Arch)
	}
	if _, tok, err = Open("hf:karpathy/tinyllamas/stories260K/stories260K.bin", ""); err != nil || tok.VocabSize() != 512 {
		t.Errorf("hf file spec: %v", err)
	}
	// A 32000-token tokenizer does not fit these models.
	big := filepath.Join(mir, "models/meta-llama/llama2-tokenizer/tokenizer.bin")
	if _, _, err := Open(ck, big); err == nil || !strings.Contains(err.Error(), "512") || !strings.Contains(err.Error(), big) {
		t.Errorf("llama2c vocab mismatch: %v", err)
	}
	bigModel := filepath.Join(mir, "models/meta-llama/llama2-tokenizer/tokenizer.model")
	if _, _, err := Open(tinyStoriesDir(t), bigModel); err == nil || !strings.Contains(err.Error(), "vocab_size 2048") {
		t.Errorf("hf vocab mismatch: %v", err)
	}
	// A checkpoint alone in a folder has no tokenizer.
	dir := t.TempDir()
	b, _ := os.ReadFile(ck)
	lone := filepath.Join(dir, "model.bin")
	os.WriteFile(lone, b, 0o644)
	if _, _, err := Open(lone, ""); err == nil || !strings.Contains(err.Error(), "no tokenizer found for "+lone+"; pass --tokenizer") {
		t.Errorf("lone checkpoint: %v", err)
	}
	// A sibling tokenizer of the wrong size is not taken.
	big2, _ := os.ReadFile(big)
	os.WriteFile(filepath.Join(dir, "tokenizer.bin"), big2, 0o644)
	if _, _, err := Open(lone, ""); err == nil || !strings.Contains(err.Error(), "pass --tokenizer") {
		t.Errorf("wrong-size sibling: %v", err)
	}
	if _, _, err := Open(filepath.Join(dir, "nothing"), ""); err == nil {
		t.Error("missing path opened")
	}
	if _, _, err := Open(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty folder: %v", err)
	}
}
