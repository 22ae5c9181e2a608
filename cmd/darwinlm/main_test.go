package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/darwinlm/darwinlm-go/hub"
)

// run executes the CLI in-process and returns stdout and the error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, r); close(done) }()
	rootCmd.SetArgs(args)
	// Flags keep their values between in-process runs; reset the ones tests vary.
	for _, c := range rootCmd.Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() == "stringSlice" || f.Value.Type() == "stringArray" {
				return
			}
			f.Value.Set(f.DefValue)
			f.Changed = false
		})
	}
	err = execute()
	w.Close()
	<-done
	os.Stdout = old
	return out.String(), err
}

func needMirror(t *testing.T) {
	if hub.Mirror() == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
}

// Greedy generation from BOS with stories260K must reproduce the sample
// documented in llama2.c's doc/stories260K.md.
func TestGenerateStories260KMatchesLlama2c(t *testing.T) {
	needMirror(t)
	out, err := run(t, "generate", "--model", "hf:karpathy/tinyllamas/stories260K/stories260K.bin", "--max-tokens", "60", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	want := "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
	if !strings.HasPrefix(out, want) {
		t.Fatalf("got %q, want prefix %q", out, want)
	}
}

func TestTokenizeJSON(t *testing.T) {
	needMirror(t)
	out, err := run(t, "tokenize", "--model", "hf:raincandy-u/TinyStories-656K", "--no-special", "--text", "Hello world")
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ IDs []int }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	// From the mirror's golden_ids.jsonl (Hugging Face reference tokenizer).
	want := []int{80, 1288, 139, 410, 555}
	if len(got.IDs) != len(want) {
		t.Fatalf("got %v want %v", got.IDs, want)
	}
	for i := range want {
		if got.IDs[i] != want[i] {
			t.Fatalf("got %v want %v", got.IDs, want)
		}
	}
}

// ppl on a small text file: the counts follow the window protocol exactly.
func TestPPLWindowCounts(t *testing.T) {
	needMirror(t)
	dir := t.TempDir()
	text := strings.Repeat("Once upon a time there was a cat. The cat liked milk. ", 40)
	p := filepath.Join(dir, "t.txt")
	os.WriteFile(p, []byte(text), 0o644)
	tokOut, err := run(t, "tokenize", "--model", "hf:raincandy-u/TinyStories-656K", "--no-special", "--text", text)
	if err != nil {
		t.Fatal(err)
	}
	var tk struct{ IDs []int }
	json.Unmarshal([]byte(tokOut), &tk)
	out, err := run(t, "ppl", "--model", "hf:raincandy-u/TinyStories-656K", "--text-file", p, "--seq-len", "64", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		PPL    float64 `json:"ppl"`
		Tokens int     `json:"tokens"`
		Scored int     `json:"scored_tokens"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	T := len(tk.IDs)
	if res.Tokens != T || res.Scored != (T/64)*63 {
		t.Fatalf("tokens %d scored %d, want %d and %d", res.Tokens, res.Scored, T, (T/64)*63)
	}
	if !(res.PPL > 1 && res.PPL < 300) {
		t.Fatalf("implausible ppl %g (uniform over the vocabulary would be 2048)", res.PPL)
	}
}

func TestBadInputErrors(t *testing.T) {
	needMirror(t)
	dir := t.TempDir()
	bogus := filepath.Join(dir, "model.bin")
	os.WriteFile(bogus, []byte{1, 2, 3}, 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"ppl", "--model", "hf:raincandy-u/TinyStories-656K", "--text-file", filepath.Join(dir, "missing.txt"), "--seq-len", "8"}, "missing.txt"},
		{[]string{"ppl", "--model", "hf:raincandy-u/TinyStories-656K", "--text-file", bogus, "--seq-len", "1"}, "--seq-len"},
		{[]string{"generate", "--model", bogus, "--max-tokens", "1"}, "model.bin"},
		{[]string{"generate", "--model", "hf:nobody/nothing", "--max-tokens", "1"}, "nobody/nothing"},
		{[]string{"generate", "--model", "hf:raincandy-u/TinyStories-656K", "--backend", "nope"}, "unknown backend"},
		// the search opens its backend by name: --device must reach it
		{[]string{"search", "--model", "hf:raincandy-u/TinyStories-656K", "--database", dir, "--calib", bogus,
			"--log", filepath.Join(dir, "log"), "--out", filepath.Join(dir, "out.txt"), "--backend", "cpu", "--device", "0"}, "no devices"},
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
	for _, c := range cases {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one mentioning %q", c.args, err, c.want)
		}
	}
}

// eval end to end: lm-eval's results layout on stdout and in --out, one
// log-samples line per document, and clear errors for bad requests.
func TestEvalCommand(t *testing.T) {
	needMirror(t)
	dir := t.TempDir()
	out, samples := filepath.Join(dir, "res.json"), filepath.Join(dir, "samples.jsonl")
	stdout, err := run(t, "eval", "--model", "hf:raincandy-u/TinyStories-656K", "--tasks", "piqa,arc_easy", "--limit", "5",
		"--format", "json", "--out", out, "--log-samples", samples, "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Results map[string]map[string]any `json:"results"`
		Config  map[string]any            `json:"config"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	for _, task := range []string{"piqa", "arc_easy"} {
		acc, ok := res.Results[task]["acc,none"].(float64)
		if !ok || acc < 0 || acc > 1 {
			t.Errorf("%s: acc,none = %v", task, res.Results[task]["acc,none"])
		}
		if _, ok := res.Results[task]["acc_stderr,none"]; !ok {
			t.Errorf("%s: no acc_stderr,none", task)
		}
	}
	if b, err := os.ReadFile(out); err != nil || !json.Valid(b) {
		t.Fatalf("--out file: %v", err)
	}
	b, err := os.ReadFile(samples)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d log-samples lines, want 10 (5 documents × 2 tasks)", len(lines))
	}
	var s struct {
		Task           string    `json:"task"`
		Contexts       []string  `json:"contexts"`
		Continuations  []string  `json:"continuations"`
		Loglikelihoods []float64 `json:"loglikelihoods"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &s); err != nil {
		t.Fatal(err)
	}
	if s.Task == "" || len(s.Continuations) < 2 || len(s.Loglikelihoods) != len(s.Continuations) || len(s.Contexts) != len(s.Continuations) {
		t.Fatalf("log-samples line: %+v", s)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--tasks", "piqa", "--limit", "0"}, "limit"},
		{[]string{"eval", "--tasks", "no_such_task", "--limit", "1"}, "no_such_task"},
	} {
		if _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one mentioning %q", c.args, err, c.want)
		}
	}
}

// Sampling is reproducible for a seed and differs between seeds.
func TestGenerateSamplingSeeded(t *testing.T) {
	needMirror(t)
	gen := func(seed string) string {
		out, err := run(t, "generate", "--prompt", "Once upon a time", "--max-tokens", "40", "--temperature", "1", "--top-p", "0.9", "--seed", seed, "--quiet")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := gen("1"), gen("1"), gen("2")
	if a != b {
		t.Fatalf("same seed, different text:\n%q\n%q", a, b)
	}
	if a == c {
		t.Fatalf("seeds 1 and 2 gave the same 40 sampled tokens: %q", a)
	}
	if !strings.HasPrefix(a, "Once upon a time") {
		t.Fatalf("output does not start with the prompt: %q", a)
	}
}

// A failure to write an output file after the compute (a full disk, a folder
// removed meanwhile) still leaves the results on stdout, and the error names
// the flag.
func TestResultsOnStdoutWhenWritingFails(t *testing.T) {
	needMirror(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "t.txt")
	os.WriteFile(text, []byte(strings.Repeat("Once upon a time there was a cat. ", 30)), 0o644)
	old := writeOutput
	defer func() { writeOutput = old }()
	writeOutput = func(path string, b []byte) error { return errors.New("disk full (simulated)") }
	for _, c := range []struct {
		args       []string
		flag, want string
	}{
		{[]string{"eval", "--tasks", "piqa", "--limit", "2", "--format", "json", "--out", filepath.Join(dir, "r.json"), "--quiet"}, "--out", `"piqa"`},
		{[]string{"eval", "--tasks", "piqa", "--limit", "2", "--log-samples", filepath.Join(dir, "s.jsonl"), "--quiet"}, "--log-samples", "piqa"},
		{[]string{"ppl", "--text-file", text, "--seq-len", "32", "--out", filepath.Join(dir, "p.json"), "--quiet"}, "--out", `"ppl":`},
	} {
		out, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.flag) || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%v: error %v, want one naming %s", c.args, err, c.flag)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%v: stdout %q lacks the results (%s)", c.args, out, c.want)
		}
	}
}
