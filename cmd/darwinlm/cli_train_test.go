package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// train: flags checked before anything is loaded, an earlier run never
// replaced silently, a refused resume that names the settings, extension of
// a finished constant-schedule run, outputs with the umask's modes.
func TestCLITrain(t *testing.T) {
	needMirror(t)
	fx := makeFixtures(t)
	base := func(out string, extra ...string) []string {
		return append([]string{"train", "--quiet", "--data", fx.text, "--seq-len", "32", "--batch", "2", "--out", out}, extra...)
	}
	env := []string{"DARWINLM_OFFLINE=1"}
	// A finished run to refuse replacing.
	runDir := filepath.Join(t.TempDir(), "run")
	if r := runBin(t, fx.dir, env, base(runDir, "--steps", "2")...); r.code != 0 {
		t.Fatalf("training: %d\n%s", r.code, r.stderr)
	}
	before := listTree(t, runDir)

	bad := []struct {
		name string
		args []string // OUT is a fresh folder path (not created)
		code int
		want []string
	}{
		{"no --out", []string{"train", "--data", fx.text, "--steps", "1"}, 2, []string{"--out is required"}},
		{"no --data", []string{"train", "--out", "OUT", "--steps", "1"}, 2, []string{"--data is required"}},
		{"no budget", base("OUT"), 2, []string{"--tokens", "--steps"}},
		{"--lr nan", base("OUT", "--steps", "1", "--lr", "nan"), 2, []string{"--lr", "not a finite number"}},
		{"--lr inf", base("OUT", "--steps", "1", "--lr", "inf"), 2, []string{"--lr", "not a finite number"}},
		{"--lr -1", base("OUT", "--steps", "1", "--lr", "-1"), 2, []string{"--lr", "positive"}},
		{"--batch 0", base("OUT", "--steps", "1", "--batch", "0"), 2, []string{"--batch", "at least 1"}},
		{"--steps 0", base("OUT", "--steps", "0"), 2, []string{"--steps", "at least 1"}},
		{"--tokens -5", base("OUT", "--tokens", "-5"), 2, []string{"--tokens"}},
		{"--seq-len 1", base("OUT", "--steps", "1", "--seq-len", "1"), 2, []string{"--seq-len"}},
		{"--beta2 1", base("OUT", "--steps", "1", "--beta2", "1"), 2, []string{"--beta2"}},
		{"--weight-decay -0.1", base("OUT", "--steps", "1", "--weight-decay", "-0.1"), 2, []string{"--weight-decay"}},
		{"--kd-weight 2", base("OUT", "--steps", "1", "--kd-weight", "2"), 2, []string{"--kd-weight"}},
		{"--keep 0", base("OUT", "--steps", "1", "--keep", "0"), 2, []string{"--keep"}},
		{"positional", append(base("OUT", "--steps", "1"), "extra"), 2, []string{"no positional arguments"}},
		{"--out under a file", base(fx.text+"/run", "--steps", "1"), 1, []string{"--out", "not a folder"}},
		{"invalid UTF-8 data", []string{"train", "--quiet", "--data", fx.badUTF8, "--steps", "1", "--out", "OUT"}, 1, []string{"bad.txt", "at byte 5"}},
		{"earlier run", base(runDir, "--steps", "2"), 2, []string{runDir, "earlier run", "step-00000002", "--resume", "--force"}},
		{"--resume and --force", base(runDir, "--steps", "2", "--resume", "--force"), 2, []string{"--resume and --force"}},
		{"resume with another lr", base(runDir, "--steps", "2", "--resume", "--lr", "0.005"), 1, []string{"lr 0.0001 vs 0.005"}},
		{"extend a cosine run", base(runDir, "--steps", "2", "--resume", "--schedule", "cosine"), 1, []string{`schedule "constant" vs "cosine"`}},
		{"diverging run", base("OUT", "--steps", "3", "--lr", "1e30"), 1, []string{"NaN"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			work := t.TempDir()
			out := filepath.Join(work, "run")
			args := make([]string, len(c.args))
			for i, a := range c.args {
				args[i] = strings.ReplaceAll(a, "OUT", out)
			}
			r := runBin(t, work, env, args...)
			if r.code != c.code {
				t.Errorf("exit status %d, want %d\nstderr: %s", r.code, c.code, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not mention %q", r.stderr, w)
				}
			}
			if strings.Contains(r.stderr, "goroutine ") || r.stdout != "" {
				t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
			}
			if left := listTree(t, work); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
			if after := listTree(t, runDir); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("the earlier run changed: %v -> %v", before, after)
			}
		})
	}

	// Extending a finished constant-schedule run gives bitwise the run that
	// asked for the larger budget from the start.
	t.Run("extend a constant run", func(t *testing.T) {
		dir := t.TempDir()
		ext, ref := filepath.Join(dir, "ext"), filepath.Join(dir, "ref")
		for _, a := range [][]string{base(ext, "--steps", "2"), base(ext, "--steps", "4", "--resume"), base(ref, "--steps", "4")} {
			if r := runBin(t, dir, env, a...); r.code != 0 {
				t.Fatalf("%v: %d\n%s", a, r.code, r.stderr)
			}
		}
		a, err1 := os.ReadFile(filepath.Join(ext, "final", "model.safetensors"))
		b, err2 := os.ReadFile(filepath.Join(ref, "final", "model.safetensors"))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Fatalf("extended run differs from the 4-step run (%v, %v)", err1, err2)
		}
	})
	t.Run("--force starts over", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "run")
		for _, a := range [][]string{base(dir, "--steps", "3"), base(dir, "--steps", "1", "--force")} {
			if r := runBin(t, filepath.Dir(dir), env, a...); r.code != 0 {
				t.Fatalf("%v: %d\n%s", a, r.code, r.stderr)
			}
		}
		if got := strings.Join(listTree(t, dir), " "); strings.Contains(got, "step-00000003") || !strings.Contains(got, "step-00000001") {
			t.Fatalf("after --force: %s", got)
		}
	})
	t.Run("modes follow the umask", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "run")
		cmd := exec.Command("sh", append([]string{"-c", `umask 022 && exec "$0" "$@"`, binary(t)}, base(dir, "--steps", "1")...)...)
		cmd.Env = mergeEnv(os.Environ(), env)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		for p, want := range map[string]os.FileMode{
			"": 0o755, "final": 0o755, "step-00000001": 0o755, "latest": 0o644, "train_log.parquet": 0o644,
			"final/model.safetensors": 0o644, "final/config.json": 0o644, "step-00000001/model.safetensors": 0o644,
			"step-00000001/train_state.safetensors": 0o644, "step-00000001/state.json": 0o644,
		} {
			st, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
			}
		}
	})
	t.Run("--model RUN_DIR of a real run", func(t *testing.T) {
		if r := runBin(t, fx.dir, env, "ppl", "--quiet", "--text-file", fx.text, "--seq-len", "32", "--model", runDir); r.code != 0 {
			t.Fatalf("%d: %s", r.code, r.stderr)
		}
		// What a refused cosine extension recommends: a new run from its model.
		next := filepath.Join(t.TempDir(), "next")
		if r := runBin(t, fx.dir, env, append(base(next, "--steps", "1"), "--model", runDir)...); r.code != 0 {
			t.Fatalf("train --model RUN_DIR: %d: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(next, "final", "tokenizer.json")); err != nil {
			t.Fatalf("the new run's final model has no tokenizer: %v", err)
		}
	})
}
