package train

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// buildCLI builds the darwinlm binary into a temp folder.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "darwinlm")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/darwinlm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func cliEnv(t *testing.T) []string {
	return append(os.Environ(), "DARWINLM_HUB_MIRROR="+mirror(t), "DARWINLM_OFFLINE=1")
}

// A run killed with SIGKILL after its first checkpoint and continued with
// --resume ends with bitwise the weights (and losses) of an uninterrupted run.
func TestSIGKILLResumeBitwise(t *testing.T) {
	env := cliEnv(t)
	bin := buildCLI(t)
	args := func(out string) []string {
		return []string{"train", "--model", "hf:raincandy-u/TinyStories-656K",
			"--data", "hf-dataset:roneneldan/TinyStories/default/validation_prefix",
			"--steps", "10", "--seq-len", "64", "--batch", "2", "--lr", "1e-3", "--schedule", "cosine", "--warmup", "2",
			"--clip", "1", "--weight-decay", "0.01", "--seed", "7", "--checkpoint-every", "3", "--out", out, "--quiet"}
	}
	run := func(a ...string) {
		cmd := exec.Command(bin, a...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", a, err, out)
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	run(args(dirA)...)

	// Slow the second run down so the kill lands between checkpoints.
	cmd := exec.Command(bin, append(args(dirB), "--step-delay", "150ms")...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dirB, "latest")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no checkpoint appeared; stderr:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the run finished before it could be killed")
	}
	killedAt, _ := LatestCheckpoint(dirB)
	t.Logf("killed; newest checkpoint %s", filepath.Base(killedAt))
	if strings.HasSuffix(killedAt, "step-00000010") {
		t.Fatalf("the kill came after the last step")
	}
	run(append(args(dirB), "--resume")...)

	la, _ := LatestCheckpoint(dirA)
	lb, _ := LatestCheckpoint(dirB)
	pa, err := ReadParams(la)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := ReadParams(lb)
	if err != nil {
		t.Fatal(err)
	}
	if len(pa) == 0 || len(pa) != len(pb) {
		t.Fatalf("tensor counts differ: %d vs %d", len(pa), len(pb))
	}
	for name, a := range pa {
		b := pb[name]
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s[%d]: uninterrupted %v, resumed %v", name, i, a[i], b[i])
			}
		}
	}
	ra, err := parquet.ReadFile[LogRow](filepath.Join(dirA, "train_log.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := parquet.ReadFile[LogRow](filepath.Join(dirB, "train_log.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != 10 || len(rb) != 10 {
		t.Fatalf("log rows: %d and %d, want 10", len(ra), len(rb))
	}
	for i := range ra {
		if ra[i].Step != rb[i].Step || ra[i].Loss != rb[i].Loss || ra[i].LR != rb[i].LR || ra[i].GradNorm != rb[i].GradNorm || ra[i].Tokens != rb[i].Tokens {
			t.Fatalf("log row %d differs: %+v vs %+v", i, ra[i], rb[i])
		}
	}
}

// Bad inputs stop with clear messages.
func TestCLIBadInput(t *testing.T) {
	env := cliEnv(t)
	bin := buildCLI(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	short := filepath.Join(dir, "short.txt")
	os.WriteFile(short, []byte("Once upon a time."), 0o644)
	notext := filepath.Join(dir, "notext.jsonl")
	os.WriteFile(notext, []byte(`{"content": "hello"}`+"\n"), 0o644)
	for _, c := range []struct {
		data, want string
		extra      []string
	}{
		{empty, "empty", nil},
		{short, "fewer than one sequence", nil},
		{notext, "text", nil},
		{short, "NaN", []string{"--seq-len", "4", "--lr", "1e30", "--steps", "3", "--optimizer", "sgd"}},
	} {
		a := []string{"train", "--model", "hf:raincandy-u/TinyStories-656K", "--data", c.data, "--seq-len", "64", "--batch", "1", "--steps", "1", "--out", filepath.Join(dir, "out"), "--quiet"}
		a = append(a, c.extra...)
		cmd := exec.Command(bin, a...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: no error; output:\n%s", c.data, out)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s: error does not mention %q:\n%s", c.data, c.want, out)
		}
		t.Logf("%s: %s", filepath.Base(c.data), strings.TrimSpace(string(out)))
	}
}
