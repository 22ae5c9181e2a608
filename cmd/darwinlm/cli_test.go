package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/model"
)

// The tests in this file run the real binary, as a user would: exit status,
// stdout, stderr and what is left on disk.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds darwinlm once per test process (into a temporary folder
// removed by TestMain).
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "darwinlm-bin-")
		if err != nil {
			binErr = err
			return
		}
		binDirs = append(binDirs, dir)
		binPath = filepath.Join(dir, "darwinlm")
		// As make build: the commit for --version.
		commit, _ := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=40").Output()
		cmd := exec.Command("go", "build", "-ldflags", "-X main.buildCommit="+strings.TrimSpace(string(commit)), "-o", binPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("building darwinlm: %v", binErr)
	}
	return binPath
}

var binDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range binDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary in dir with env added to the test's environment
// (an entry "NAME=" removes NAME).
func runBin(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Dir = dir
	cmd.Env = mergeEnv(os.Environ(), env)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{code, so.String(), se.String()}
}

func mergeEnv(base, add []string) []string {
	out := []string{}
	drop := map[string]bool{}
	for _, e := range add {
		k, _, _ := strings.Cut(e, "=")
		drop[k] = true
	}
	for _, e := range base {
		k, _, _ := strings.Cut(e, "=")
		if !drop[k] {
			out = append(out, e)
		}
	}
	for _, e := range add {
		if !strings.HasSuffix(e, "=") {
			out = append(out, e)
		}
	}
	return out
}

// listTree lists every path under dir (relative), to check that a failed
// command left nothing behind.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return nil
	})
	return out
}

const tiny = "hf:raincandy-u/TinyStories-656K"

// fixtures builds, once per test, the files the cases use: texts, a model
// with a NaN weight, training-run folders.
type fixtures struct {
	dir, text, badUTF8, nul, nanModel, runFinal, runLatest, runBroken, empty string
}

func makeFixtures(t *testing.T) fixtures {
	t.Helper()
	dir := t.TempDir()
	f := fixtures{dir: dir}
	w := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.text = w("story.txt", []byte(strings.Repeat("Once upon a time there was a cat. The cat liked milk. ", 40)))
	f.badUTF8 = w("bad.txt", []byte("hello\xff world"))
	f.nul = w("nul.txt", []byte("abc\x00def"))
	m, _, err := model.Open(tiny, "")
	if err != nil {
		t.Fatal(err)
	}
	tokSrc, err := hub.ResolveModel(tiny)
	if err != nil {
		t.Fatal(err)
	}
	f.runFinal = filepath.Join(dir, "run-final")
	if err := model.SaveHF(m, filepath.Join(f.runFinal, "final"), tokSrc); err != nil {
		t.Fatal(err)
	}
	f.runLatest = filepath.Join(dir, "run-latest")
	if err := model.SaveHF(m, filepath.Join(f.runLatest, "step-00000002"), tokSrc); err != nil {
		t.Fatal(err)
	}
	w("run-latest/latest", []byte("step-00000002\n"))
	f.runBroken = filepath.Join(dir, "run-broken")
	os.MkdirAll(filepath.Join(f.runBroken, "step-00000001"), 0o755)
	w("run-broken/latest", []byte("step-00000001\n"))
	f.empty = filepath.Join(dir, "empty")
	os.MkdirAll(f.empty, 0o755)
	bad, _, err := model.Open(tiny, "")
	if err != nil {
		t.Fatal(err)
	}
	bad.Layers[1].Wdown[7] = float32(math.NaN())
	f.nanModel = filepath.Join(dir, "nan-model")
	if err := model.SaveHF(bad, f.nanModel, tokSrc); err != nil {
		t.Fatal(err)
	}
	return f
}

// Every command checks its command line and inputs before it computes:
// exit status 2 for a usage mistake, 1 for a bad input, a message naming the
// flag, file or field, and nothing written to the output folder.
func TestCLIBadInputs(t *testing.T) {
	needMirror(t)
	fx := makeFixtures(t)
	type tc struct {
		name string
		args []string
		code int
		want []string // substrings of stderr (all)
	}
	cases := []tc{
		// 2. output paths are checked before compute
		{"eval --out in a missing folder", []string{"eval", "--tasks", "piqa", "--limit", "2", "--out", "/nonexistent/dir/r.json"}, 1, []string{"--out", "/nonexistent/dir", "does not exist"}},
		{"eval --log-samples is a folder", []string{"eval", "--tasks", "piqa", "--limit", "2", "--log-samples", "OUT"}, 1, []string{"--log-samples", "is a folder"}},
		{"eval --out and --log-samples the same", []string{"eval", "--tasks", "piqa", "--limit", "2", "--out", "OUT/a.json", "--log-samples", "OUT/a.json"}, 1, []string{"--out and --log-samples"}},
		{"ppl --out under a file", []string{"ppl", "--text-file", fx.text, "--out", fx.text + "/r.json"}, 1, []string{"--out", "not a folder"}},
		{"--cpuprofile in a missing folder", []string{"ppl", "--text-file", fx.text, "--cpuprofile", "/nonexistent/p.prof"}, 1, []string{"--cpuprofile"}},
		// 3. positional arguments and required flags
		{"ppl positional", []string{"ppl", "story.txt"}, 2, []string{"no positional arguments", `"story.txt"`}},
		{"eval positional", []string{"eval", "piqa"}, 2, []string{"--tasks", "piqa"}},
		{"info positional", []string{"info", "x"}, 2, []string{"no positional arguments"}},
		{"tokenize two arguments", []string{"tokenize", "a", "b"}, 2, []string{"one TEXT argument"}},
		{"tokenize argument and --text", []string{"tokenize", "--text", "a", "b"}, 2, []string{"--text"}},
		{"tokenize nothing", []string{"tokenize"}, 2, []string{"--text"}},
		{"generate two arguments", []string{"generate", "a", "b"}, 2, []string{"one PROMPT argument"}},
		{"ppl without --text-file", []string{"ppl"}, 2, []string{"--text-file is required"}},
		{"eval without tasks", []string{"eval"}, 2, []string{"--tasks or --suite"}},
		{"eval --num-fewshot -1", []string{"eval", "--tasks", "piqa", "--num-fewshot", "-1"}, 2, []string{"--num-fewshot"}},
		{"unknown flag", []string{"ppl", "--text-fil", "x"}, 2, []string{"--text-fil"}},
		{"unknown command", []string{"perplexity"}, 2, []string{"perplexity"}},
		// 5. a folder that is not a model says what was looked for
		{"--model empty folder", []string{"ppl", "--text-file", fx.text, "--model", fx.empty}, 1, []string{fx.empty, "training run"}},
		{"--model run without a model", []string{"ppl", "--text-file", fx.text, "--model", fx.runBroken}, 1, []string{"step-00000001", "holds no model"}},
		// 6. an explicit --seq-len past the context is still refused
		{"ppl --seq-len past the context", []string{"ppl", "--text-file", fx.text, "--seq-len", "1024"}, 2, []string{"--seq-len 1024", "512"}},
		// 8. numbers, text, weights
		{"generate --temperature nan", []string{"generate", "--temperature", "nan"}, 2, []string{"--temperature", "not a finite number"}},
		{"generate --top-p inf", []string{"generate", "--top-p", "inf"}, 2, []string{"--top-p"}},
		{"generate --temperature -1", []string{"generate", "--temperature", "-1"}, 2, []string{"--temperature"}},
		{"generate --max-tokens -1", []string{"generate", "--max-tokens", "-1"}, 2, []string{"--max-tokens"}},
		{"eval --batch-size 0", []string{"eval", "--tasks", "piqa", "--batch-size", "0"}, 2, []string{"--batch-size"}},
		{"eval --seq-len 1", []string{"eval", "--tasks", "wikitext2_ppl", "--seq-len", "1"}, 2, []string{"--seq-len"}},
		{"ppl --seq-len 1", []string{"ppl", "--text-file", fx.text, "--seq-len", "1"}, 2, []string{"--seq-len"}},
		{"eval --limit 0", []string{"eval", "--tasks", "piqa", "--limit", "0"}, 2, []string{"--limit"}},
		{"ppl invalid UTF-8", []string{"ppl", "--text-file", fx.badUTF8}, 1, []string{"bad.txt", "UTF-8", "at byte 5"}},
		{"ppl binary file", []string{"ppl", "--text-file", fx.nul}, 1, []string{"nul.txt", "NUL", "byte 3"}},
		{"tokenize invalid UTF-8", []string{"tokenize", "a\xffb"}, 2, []string{"UTF-8", "byte 1"}},
		{"ppl NaN weights", []string{"ppl", "--text-file", fx.text, "--model", fx.nanModel}, 1, []string{"model.layers.1.mlp.down_proj.weight", "NaN", "element 7"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			work, args := outDir(t, c.args)
			switch args[0] {
			case "ppl", "eval", "generate", "tokenize", "train":
				args = append(args, "--quiet")
			}
			r := runBin(t, work, []string{"DARWINLM_OFFLINE=1"}, args...)
			if r.code != c.code {
				t.Errorf("exit status %d, want %d\nstderr: %s", r.code, c.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not mention %q", r.stderr, w)
				}
			}
			failedCleanly(t, r, work)
		})
	}
}

// outDir makes a work folder holding an empty folder out, and returns it
// with args where each OUT stands for out's path.
func outDir(t *testing.T, args []string) (work string, withOut []string) {
	t.Helper()
	work = t.TempDir()
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	withOut = make([]string, len(args))
	for i, a := range args {
		withOut[i] = strings.ReplaceAll(a, "OUT", out)
	}
	return work, withOut
}

// failedCleanly checks what a refused command must leave: no panic, nothing
// on stdout, nothing written in work (run in outDir's folder).
func failedCleanly(t *testing.T, r result, work string) {
	t.Helper()
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("panic: %s", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout on failure: %q", r.stdout)
	}
	if left := listTree(t, work); len(left) != 1 || left[0] != "out" {
		t.Errorf("left behind: %v", left)
	}
}

// What the commands accept: positional text, run folders, the context as
// the default window, a note past the context, --version, the mirror found
// without the variable, outputs with the umask's modes.
func TestCLIAccepts(t *testing.T) {
	needMirror(t)
	fx := makeFixtures(t)
	work := t.TempDir()
	ok := func(r result) result {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit status %d\nstderr: %s", r.code, r.stderr)
		}
		return r
	}
	ids := func(out string) []int {
		t.Helper()
		var v struct{ IDs []int }
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		return v.IDs
	}

	t.Run("tokenize takes the text as argument and follows the tokenizer's specials", func(t *testing.T) {
		a := ids(ok(runBin(t, work, nil, "tokenize", "Hello world")).stdout)
		b := ids(ok(runBin(t, work, nil, "tokenize", "--text", "Hello world")).stdout)
		c := ids(ok(runBin(t, work, nil, "tokenize", "--no-special", "Hello world")).stdout)
		// golden_ids.jsonl of the mirror (add_special_tokens=false); the
		// tokenizer's config adds BOS (id 1, <|endoftext|>... as configured).
		want := []int{80, 1288, 139, 410, 555}
		if !slices.Equal(c, want) {
			t.Fatalf("--no-special: %v, want %v", c, want)
		}
		if !slices.Equal(a, b) || len(a) != len(want)+1 || !slices.Equal(a[1:], want) {
			t.Fatalf("default: argument %v, --text %v; want BOS then %v", a, b, want)
		}
	})
	t.Run("generate takes the prompt as argument", func(t *testing.T) {
		r := ok(runBin(t, work, nil, "generate", "--max-tokens", "5", "--quiet", "The dragon"))
		if !strings.HasPrefix(r.stdout, "The dragon") {
			t.Fatalf("stdout %q does not start with the prompt", r.stdout)
		}
	})
	t.Run("generate past the context says so", func(t *testing.T) {
		r := ok(runBin(t, work, nil, "generate", "--max-tokens", "600", "--quiet", "Once"))
		if !strings.Contains(r.stderr, "context is 512 tokens") || !strings.Contains(r.stderr, "--max-tokens 600") {
			t.Fatalf("no note on stderr: %q", r.stderr)
		}
	})
	pplOf := func(r result) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("%v: %q", err, r.stdout)
		}
		return v
	}
	t.Run("ppl defaults to the model's context", func(t *testing.T) {
		v := pplOf(ok(runBin(t, work, nil, "ppl", "--quiet", "--text-file", fx.text)))
		if v["seq_len"] != float64(512) {
			t.Fatalf("seq_len %v, want the context 512", v["seq_len"])
		}
	})
	t.Run("--model RUN_DIR", func(t *testing.T) {
		ref := pplOf(ok(runBin(t, work, nil, "ppl", "--quiet", "--text-file", fx.text, "--seq-len", "64")))
		r := ok(runBin(t, work, nil, "ppl", "--quiet", "--text-file", fx.text, "--seq-len", "64", "--model", fx.runFinal))
		if v := pplOf(r); v["ppl"] != ref["ppl"] {
			t.Fatalf("final: ppl %v, the saved model's %v", v["ppl"], ref["ppl"])
		}
		if r.stderr != "" {
			t.Fatalf("final: unexpected stderr %q", r.stderr)
		}
		r = ok(runBin(t, work, nil, "ppl", "--quiet", "--text-file", fx.text, "--seq-len", "64", "--model", fx.runLatest))
		if v := pplOf(r); v["ppl"] != ref["ppl"] {
			t.Fatalf("latest: ppl %v, the saved model's %v", v["ppl"], ref["ppl"])
		}
		if !strings.Contains(r.stderr, "latest checkpoint") || !strings.Contains(r.stderr, "step-00000002") {
			t.Fatalf("latest: no note on stderr: %q", r.stderr)
		}
	})
	t.Run("--model RUN_DIR for every command", func(t *testing.T) {
		for _, args := range [][]string{
			{"tokenize", "Hello"},
			{"generate", "--max-tokens", "3", "Hello"},
			{"eval", "--tasks", "piqa", "--limit", "1"},
			{"train", "--data", fx.text, "--steps", "1", "--seq-len", "16", "--batch", "1", "--out", filepath.Join(t.TempDir(), "run")},
		} {
			r := ok(runBin(t, work, nil, append(args, "--quiet", "--model", fx.runLatest)...))
			if !strings.Contains(r.stderr, "latest checkpoint") {
				t.Errorf("%s: no note on stderr: %q", args[0], r.stderr)
			}
		}
	})
	t.Run("--version", func(t *testing.T) {
		r := ok(runBin(t, work, nil, "--version"))
		if !strings.HasPrefix(r.stdout, "darwinlm github.com/darwinlm/darwinlm-go ") || !strings.Contains(r.stdout, "commit ") {
			t.Fatalf("--version: %q", r.stdout)
		}
		if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			if m := regexp.MustCompile(`commit ([0-9a-f]{40})`).FindStringSubmatch(r.stdout); m == nil || m[1] != strings.TrimSpace(string(head)) {
				t.Fatalf("--version %q does not name HEAD %s", r.stdout, head)
			}
		}
	})
	t.Run("mirror found without DARWINLM_HUB_MIRROR", func(t *testing.T) {
		root := hub.ModuleRoot()
		if st, err := os.Stat(filepath.Join(root, "..", "shared", "hf")); err != nil || !st.IsDir() {
			t.Skip("no ../shared/hf beside the repository")
		}
		// From the repository root (as the README's commands) and from a
		// folder outside it, where only the binary's location can help:
		// the test binary is not in a bin/ of the repository, so outside
		// the repository the hub id must fail, naming the variable's role.
		env := []string{"DARWINLM_HUB_MIRROR=", "DARWINLM_OFFLINE=1", "HF_HOME=" + t.TempDir()}
		ok(runBin(t, root, env, "tokenize", "Hello"))
		r := ok(runBin(t, root, env, "info"))
		if !strings.Contains(r.stdout, filepath.Join("shared", "hf")) {
			t.Fatalf("info does not show the mirror: %q", r.stdout)
		}
		if r := runBin(t, work, env, "tokenize", "Hello"); r.code == 0 {
			t.Fatalf("outside the repository with no mirror and offline, tokenize succeeded: %q", r.stdout)
		}
	})
	t.Run("outputs follow the umask", func(t *testing.T) {
		out := filepath.Join(work, "r.json")
		cmd := exec.Command("sh", "-c", `umask 027 && exec "$0" "$@"`, binary(t), "ppl", "--quiet", "--text-file", fx.text, "--seq-len", "64", "--out", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o640 {
			t.Fatalf("--out file mode %v under umask 027, want -rw-r-----", st.Mode().Perm())
		}
	})
}
