package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad targets and flags fail before any compute: nothing is written.
func TestShearBadInput(t *testing.T) {
	needMirror(t)
	t.Setenv("DARWINLM_OFFLINE", "1")
	dir := t.TempDir()
	cfg := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	larger := cfg("larger.json", `{"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 16, "intermediate_size": 768}`)
	noLayers := cfg("nolayers.json", `{"hidden_size": 64, "num_hidden_layers": 0, "num_attention_heads": 4, "intermediate_size": 192}`)
	badDim := cfg("baddim.json", `{"hidden_size": 100, "num_hidden_layers": 2, "num_attention_heads": 5, "intermediate_size": 300}`)
	data := "hf-dataset:roneneldan/TinyStories/default/validation_prefix[:20]"
	out := filepath.Join(dir, "out")
	base := []string{"shear", "-q", "--data", data, "--steps", "2", "--seq-len", "16", "--batch", "1", "--out", out}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-config", larger}, "larger than the model"},
		{[]string{"--target-config", noLayers}, "at least one"},
		{[]string{"--target-config", badDim}, "head dimension 16 does not divide the target hidden size 100"},
		{[]string{"--target-params", "700000"}, "not below the model's 656000"},
		{[]string{"--target-params", "300000", "--target-config", badDim}, "exactly one of --target-config and --target-params"},
		{[]string{"--target-config", filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"--target-params", "300000", "--seq-len", "4096"}, "exceeds the model's context"},
		{[]string{"--target-params", "300000", "--tokens", "100"}, "exactly one of --tokens and --steps"},
	} {
		_, err := run(t, append(append([]string{}, base...), c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: %s was created although the input was refused", c.args, out)
		}
	}
}

// A short run end to end: the outputs exist and the sheared model loads in
// ppl, generate, eval and train.
func TestShearCommand(t *testing.T) {
	needMirror(t)
	t.Setenv("DARWINLM_OFFLINE", "1")
	dir := t.TempDir()
	out := filepath.Join(dir, "shear")
	data := "hf-dataset:roneneldan/TinyStories/default/validation_prefix[:200]"
	stdout, err := run(t, "shear", "-q", "--data", data, "--target-params", "328000", "--steps", "20", "--seq-len", "32",
		"--batch", "2", "--lr", "1e-3", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Model       string               `json:"model"`
		FinalParams int64                `json:"final_params"`
		Target      struct{ Hidden int } `json:"target"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Target.Hidden != 80 {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	for _, f := range []string{"model/config.json", "model/model.safetensors", "model/tokenizer.json", "shear_log.parquet", "report.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	m := rep.Model
	for _, args := range [][]string{
		{"ppl", "-q", "--model", m, "--text-file", data, "--seq-len", "64"},
		{"generate", "-q", "--model", m, "--max-tokens", "5"},
		{"eval", "-q", "--model", m, "--tasks", "arc_easy", "--limit", "3"},
		{"train", "-q", "--model", m, "--data", data, "--steps", "2", "--seq-len", "32", "--batch", "2", "--out", filepath.Join(dir, "train")},
	} {
		if _, err := run(t, args...); err != nil {
			t.Errorf("%s on the sheared model: %v", args[0], err)
		}
	}
}
