package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// database -> oneshot (uniform, dp) -> stitch, and the stitched model runs
// through ppl, generate, eval and train with the manifest's parameter count.
func TestPruneCommandsEndToEnd(t *testing.T) {
	needMirror(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	const m = "hf:raincandy-u/TinyStories-656K"
	const text = "hf-dataset:roneneldan/TinyStories/default/validation_prefix"
	out, err := run(t, "database", "--model", m, "--calib", text, "--calib-tokens", "4096", "--seq-len", "256",
		"--sampler", "first", "--levels", "4", "--out", db, "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"modules":4`) {
		t.Errorf("database output %s", out)
	}
	// Refuses to overwrite without --force.
	if _, err := run(t, "database", "--model", m, "--calib", text, "--calib-tokens", "1024", "--seq-len", "256",
		"--sampler", "first", "--levels", "2", "--out", db, "--quiet"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwrite: %v", err)
	}

	var res struct {
		Params      int64 `json:"params"`
		ModelParams int64 `json:"model_params"`
	}
	uni := filepath.Join(dir, "uniform2.txt")
	if out, err = run(t, "oneshot", "--database", db, "--model", m, "--strategy", "uniform", "--level", "2", "--out", uni); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(out), &res)
	uniParams := res.Params
	dp := filepath.Join(dir, "dp.txt")
	if out, err = run(t, "oneshot", "--database", db, "--strategy", "dp", "--target-params", strings.TrimSpace(jsonInt(uniParams)), "--out", dp); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(out), &res)
	if res.Params > uniParams || res.Params == 0 {
		t.Errorf("dp: %d params for a target of %d", res.Params, uniParams)
	}
	pm := filepath.Join(dir, "pruned")
	if out, err = run(t, "stitch", "--model", m, "--database", db, "--levels", uni, "--out", pm, "--quiet"); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal([]byte(out), &res)
	if res.Params != uniParams || res.ModelParams != uniParams {
		t.Errorf("stitch: params %d, model %d, oneshot said %d", res.Params, res.ModelParams, uniParams)
	}
	zm := filepath.Join(dir, "zeroed")
	if _, err = run(t, "stitch", "--model", m, "--database", db, "--levels", uni, "--out", zm, "--format", "zeroed", "--quiet"); err != nil {
		t.Fatal(err)
	}
	held := text + "[3000:3040]"
	pplOf := func(model string) float64 {
		out, err := run(t, "ppl", "--model", model, "--text-file", held, "--seq-len", "128", "--quiet")
		if err != nil {
			t.Fatal(err)
		}
		var r struct{ PPL float64 }
		json.Unmarshal([]byte(out), &r)
		return r.PPL
	}
	ps, pz := pplOf(pm), pplOf(zm)
	if d := ps/pz - 1; d > 1e-4 || d < -1e-4 {
		t.Errorf("shrunk ppl %g, zeroed %g", ps, pz)
	}
	if out, err = run(t, "generate", "--model", pm, "--prompt", "Once upon a time", "--max-tokens", "10", "--quiet"); err != nil || out == "" {
		t.Errorf("generate: %v %q", err, out)
	}
	if _, err = run(t, "eval", "--model", pm, "--tasks", "piqa", "--limit", "3", "--quiet"); err != nil {
		t.Errorf("eval: %v", err)
	}
	if _, err = run(t, "train", "--model", pm, "--data", held, "--steps", "2", "--seq-len", "64", "--batch", "1",
		"--out", filepath.Join(dir, "ft"), "--quiet"); err != nil {
		t.Errorf("train: %v", err)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestPruneCommandsBadInput(t *testing.T) {
	needMirror(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	const m = "hf:raincandy-u/TinyStories-656K"
	const text = "hf-dataset:roneneldan/TinyStories/default/validation_prefix"
	if _, err := run(t, "database", "--model", m, "--calib", text, "--calib-tokens", "1024", "--seq-len", "256",
		"--sampler", "first", "--levels", "2", "--out", db, "--quiet"); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.txt")
	os.WriteFile(short, []byte("Once upon a time."), 0o644)
	cfg := filepath.Join(dir, "cfg.txt")
	os.WriteFile(cfg, []byte("model.layers.0.mlp.down_proj: 1\nmodel.layers.1.mlp.down_proj: 1\nmodel.layers.0.self_attn.o_proj: 1\nmodel.layers.5.self_attn.o_proj: 1"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"database", "--model", m, "--calib", short, "--calib-tokens", "512", "--seq-len", "256", "--sampler", "first", "--out", filepath.Join(dir, "d2")}, "shorter than one window"},
		{[]string{"database", "--model", m, "--calib", text, "--attn-removed", "0,4,2,8", "--calib-tokens", "512", "--seq-len", "256", "--out", filepath.Join(dir, "d3")}, "decreases"},
		{[]string{"database", "--model", m, "--calib", text, "--mlp-removed", "0,100,400", "--calib-tokens", "512", "--seq-len", "256", "--out", filepath.Join(dir, "d4")}, "exceeds"},
		{[]string{"database", "--model", m, "--calib", text, "--sampler", "middle", "--out", filepath.Join(dir, "d5")}, "--sampler"},
		{[]string{"stitch", "--model", m, "--database", db, "--levels", cfg, "--out", filepath.Join(dir, "s")}, "layer 5"},
		{[]string{"stitch", "--model", "hf:karpathy/tinyllamas/stories260K/stories260K.bin", "--database", db, "--levels", cfg, "--out", filepath.Join(dir, "s")}, "layer 5"},
		{[]string{"oneshot", "--database", db, "--model", "hf:karpathy/tinyllamas/stories260K/stories260K.bin", "--level", "1", "--out", filepath.Join(dir, "c")}, "another architecture"},
		{[]string{"oneshot", "--database", db, "--level", "7", "--out", filepath.Join(dir, "c")}, "level 7"},
		{[]string{"oneshot", "--database", db, "--strategy", "dp", "--out", filepath.Join(dir, "c")}, "exactly one"},
		{[]string{"oneshot", "--database", filepath.Join(dir, "nodb"), "--level", "1", "--out", filepath.Join(dir, "c")}, "database.json"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
	for _, name := range []string{"d2", "d3", "d4", "d5", "s", "c"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s was written despite the error", name)
		}
	}
}
