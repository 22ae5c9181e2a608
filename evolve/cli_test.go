package evolve

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "darwinlm")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/darwinlm").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestCLIKillAndResume: `darwinlm search` killed with SIGKILL in the middle
// of a run and continued with --resume writes the same configuration and the
// same Parquet rows (wall times apart) as an uninterrupted run, also when
// the resumed part runs two candidates at once.
func TestCLIKillAndResume(t *testing.T) {
	db := storiesDB(t)
	bin := buildCLI(t)
	env := append(os.Environ(), "DARWINLM_OFFLINE=1")
	args := func(dir string) []string {
		return []string{"search", "--model", stories260K, "--database", db, "--calib", storiesText,
			"--calib-tokens", "3000", "--train-pool-tokens", "6000", "--eval-tokens", "1500", "--seq-len", "128",
			"--offspring", "6", "--survivors", "3,2,1", "--fitness-tokens", "64,128,256", "--train-tokens", "150,300,600",
			"--generations", "6", "--eval-every", "2", "--seed", "11", "--fitness-before",
			"--log", filepath.Join(dir, "log"), "--out", filepath.Join(dir, "config.txt"), "--quiet"}
	}
	run := func(a ...string) string {
		cmd := exec.Command(bin, a...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", a, err, out)
		}
		return string(out)
	}
	a, b := t.TempDir(), t.TempDir()
	run(args(a)...)

	cmd := exec.Command(bin, append(args(b), "--generation-delay", "300ms")...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once generation 1 is logged, while generation 2 is in flight.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		gens, err := ReadGenerations(filepath.Join(b, "log", GenerationsFile))
		if err == nil && len(gens) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("generation 1 never logged: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	gens, _ := ReadGenerations(filepath.Join(b, "log", GenerationsFile))
	if len(gens) >= 7 {
		t.Fatalf("the kill came after the run finished (%d generations logged)", len(gens))
	}
	if _, err := os.Stat(filepath.Join(b, "config.txt")); err == nil {
		t.Fatal("a killed run wrote --out")
	}
	t.Logf("killed after %d logged generations", len(gens)-1)
	// The resumed part evaluates two candidates at once: results must not
	// depend on it.
	run(append(args(b), "--resume", "--workers", "2")...)

	for _, f := range []string{"config.txt"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if string(x) != string(y) || len(x) == 0 {
			t.Fatalf("%s differs:\n%s\n---\n%s", f, x, y)
		}
	}
	// The result stitches with `darwinlm stitch`.
	out := run("stitch", "--model", stories260K, "--database", db, "--levels", filepath.Join(b, "config.txt"),
		"--out", filepath.Join(b, "pruned"))
	if !strings.Contains(out, `"params"`) {
		t.Fatalf("stitch: %s", out)
	}
	ca, _ := ReadCandidates(filepath.Join(a, "log", CandidatesFile))
	cb, _ := ReadCandidates(filepath.Join(b, "log", CandidatesFile))
	zc := func(r *CandidateRow) { r.Seconds = 0 }
	if len(ca) != 6*(6+3+3) || !equalRows(stripSeconds(ca, zc), stripSeconds(cb, zc)) {
		t.Fatalf("candidates.parquet: %d and %d rows, or different", len(ca), len(cb))
	}
	ga, _ := ReadGenerations(filepath.Join(a, "log", GenerationsFile))
	gb, _ := ReadGenerations(filepath.Join(b, "log", GenerationsFile))
	zg := func(r *GenerationRow) { r.Seconds = 0 }
	if len(ga) != 7 || !equalRows(stripSeconds(ga, zg), stripSeconds(gb, zg)) {
		t.Fatalf("generations.parquet: %d and %d rows, or different", len(ga), len(gb))
	}
}

// TestCLIBadInput: flag errors exit non-zero with a message, before compute.
func TestCLIBadInput(t *testing.T) {
	db := storiesDB(t)
	bin := buildCLI(t)
	dir := t.TempDir()
	base := []string{"search", "--model", stories260K, "--database", db, "--calib", storiesText, "--calib-tokens", "2000",
		"--train-pool-tokens", "3000", "--eval-tokens", "0", "--seq-len", "128", "--log", filepath.Join(dir, "log"),
		"--out", filepath.Join(dir, "c.txt"), "--quiet", "--generations", "1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-level", "12"}, "outside the database"},
		{[]string{"--target-level", "4.1"}, "cannot be reached"},
		{[]string{"--survivors", "8,4,2"}, "stage lists of different lengths"},
		{[]string{"--train-tokens", "100,200,400,8000"}, "training pool holds"},
		{[]string{"--survivors", "8,4,2,2"}, "last stage must keep exactly 1"},
		{[]string{"--log", ""}, "--log is required"},
		{[]string{"--out", ""}, "--out is required"},
	} {
		a := append(slicesClone(base), c.args...)
		// Repeated list flags append in pflag: add the defaults only when unset.
		for _, d := range [][2]string{{"--fitness-tokens", "64,128,256,512"}, {"--train-tokens", "100,200,400,800"}} {
			if !slices.Contains(a, d[0]) {
				a = append(a, d[0], d[1])
			}
		}
		cmd := exec.Command(bin, a...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: err %v, output %s; want %q", c.args, err, out, c.want)
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
