package experiment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
)

const minimal = `name: t
version: 1
profiles:
  local:
    model: /nonexistent/model
    target: 0.5
    seq_len: 16
    data: {heldout: /nonexistent/text.txt}
stages:
  - {id: dense, kind: dense}
  - {id: pt, kind: posttrain, needs: [dense]}
table:
  columns: [params, ppl, kl]
  rows:
    - {label: Dense, from: dense}
    - {label: PT, from: pt}
`

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestParseMinimal(t *testing.T) {
	s, err := Parse("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := NewPlan(s, "local")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range pl.Nodes {
		ids = append(ids, n.Stage.ID)
	}
	if got := strings.Join(ids, ","); got != "dense,pt,eval:dense,eval:pt" {
		t.Fatalf("plan order %s", got)
	}
}

func TestUnknownKeyHasLineAndColumn(t *testing.T) {
	bad := strings.Replace(minimal, "    seq_len: 16\n", "    seq_len: 16\n    seqlen: 3\n", 1)
	_, err := Parse("t.yaml", []byte(bad))
	wantErr(t, err, "t.yaml", "[8:5]", "unknown field \"seqlen\"")
}

func TestWrongTypeHasLineAndColumn(t *testing.T) {
	bad := strings.Replace(minimal, "seq_len: 16", "seq_len: sixteen", 1)
	_, err := Parse("t.yaml", []byte(bad))
	wantErr(t, err, "t.yaml", "[7:14]")
}

func TestMissingStageReference(t *testing.T) {
	bad := strings.Replace(minimal, "needs: [dense]", "needs: [base]", 1)
	_, err := Parse("t.yaml", []byte(bad))
	wantErr(t, err, "stages.pt", `needs "base"`, "not a stage")
	bad = strings.Replace(minimal, "{label: PT, from: pt}", "{label: PT, from: nothing}", 1)
	_, err = Parse("t.yaml", []byte(bad))
	wantErr(t, err, "table.rows[1]", `"nothing"`)
}

func TestCycleAndUnknownKind(t *testing.T) {
	bad := strings.Replace(minimal, "{id: dense, kind: dense}", "{id: dense, kind: dense, needs: [pt]}", 1)
	_, err := Parse("t.yaml", []byte(bad))
	wantErr(t, err, "cycle")
	bad = strings.Replace(minimal, "kind: posttrain", "kind: finetune", 1)
	_, err = Parse("t.yaml", []byte(bad))
	wantErr(t, err, `unknown kind "finetune"`)
}

func TestMissingProfile(t *testing.T) {
	s, err := Parse("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), s, Options{Profile: "paper", Results: t.TempDir()})
	wantErr(t, err, `no profile "paper"`, "profiles: local")
}

// A results folder written by another version is refused before anything
// is loaded (the model path here does not exist: the error must be the version's).
func TestResultsFromOtherVersion(t *testing.T) {
	s, err := Parse("t.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dir := ResultsDir(root, s, "local")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kv := map[string]string{"experiment": "t", "experiment_version": "2", "profile": "local"}
	if err := writeParquet(filepath.Join(dir, RowsFile), []ResultRow{{Label: "x"}}, kv); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), s, Options{Profile: "local", Results: root})
	wantErr(t, err, dir, "version 2", "version 1")
	_, err = ReadResults(dir, s)
	wantErr(t, err, "version 2")
	kv["experiment"], kv["experiment_version"] = "other", "1"
	if err := writeParquet(filepath.Join(dir, RowsFile), []ResultRow{{Label: "x"}}, kv); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), s, Options{Profile: "local", Results: root})
	wantErr(t, err, `experiment "other"`)
}

func TestBadProfileValues(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"target: 0.5", "target: 1.5", "profiles.local.target"},
		{"seq_len: 16", "seq_len: 1", "profiles.local.seq_len"},
		{"    data: {heldout: /nonexistent/text.txt}\n", "", "data.heldout"},
		{"kind: posttrain, needs: [dense]", "kind: posttrain", "exactly one model"},
		{"{id: dense, kind: dense}", "{id: dense, kind: dense, method: dp}", "method is only for oneshot"},
	} {
		_, err := Parse("t.yaml", []byte(strings.Replace(minimal, c.from, c.to, 1)))
		wantErr(t, err, c.want)
	}
}

// Every committed experiment file loads and plans for every profile, and
// stages with the same settings hash the same across files (the ablations
// reuse table1's database and default search at local scale).
func TestCommittedExperiments(t *testing.T) {
	files, _ := filepath.Glob("../experiments/*.yaml")
	if len(files) < 5 {
		t.Fatalf("found %d experiment files", len(files))
	}
	hashes := map[string]map[string]string{}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"paper", "local", "smoke"} {
			pl, err := NewPlan(s, p)
			if err != nil {
				t.Fatalf("%s %s: %v", f, p, err)
			}
			if p == "local" {
				hashes[s.Name] = map[string]string{}
				for _, n := range pl.Nodes {
					hashes[s.Name][n.Stage.ID] = n.Hash
				}
			}
		}
	}
	for _, e := range []string{"ablation-tas", "ablation-fitness", "ablation-stages"} {
		for _, id := range []string{"db", "darwinlm"} {
			if hashes[e][id] != hashes["table1"][id] {
				t.Errorf("%s stage %s hash %s differs from table1's %s", e, id, hashes[e][id], hashes["table1"][id])
			}
		}
	}
	if hashes["ablation-tas"]["no_tas"] == hashes["ablation-tas"]["darwinlm"] {
		t.Error("training-aware selection off hashes like on")
	}
}

func TestResolveSearch(t *testing.T) {
	sp := SearchParams{Survivors: []int{8, 4, 2, 1}, FitnessTokens: []int{1, 2, 4, 8}, TrainTokens: []int{10, 50, 100, 200}, Fitness: "kl"}
	off, two, ppl := false, 2, "ppl"
	got, err := resolveSearch(sp, &SearchOverride{TrainingAware: &off, Stages: &two, Fitness: &ppl})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[2 1] [4 8] [0 0] ppl"; strings.Trim(strings.Join([]string{fmtInts(got.Survivors), fmtInts(got.FitnessTokens), fmtInts(got.TrainTokens), got.Fitness}, " "), " ") != want {
		t.Fatalf("got %v", got)
	}
	if sp.TrainTokens[2] != 100 {
		t.Fatal("resolveSearch modified the profile")
	}
	five := 5
	if _, err := resolveSearch(sp, &SearchOverride{Stages: &five}); err == nil {
		t.Fatal("5 stages of 4 accepted")
	}
}

func fmtInts(v []int) string { return fmt.Sprint(v) }

func TestETA(t *testing.T) {
	spent := map[string][]float64{"eval": {10, 20}, "posttrain": {60}}
	left := []*Node{{Stage: &Stage{Kind: "eval"}}, {Stage: &Stage{Kind: "search"}}, {Stage: &Stage{Kind: "posttrain"}}}
	// eval: mean 15; search: unseen, mean of all (30); posttrain: 60.
	if got := eta(spent, left); got != 105*time.Second {
		t.Fatalf("eta = %v, want 1m45s", got)
	}
	if got := eta(map[string][]float64{}, left); got != 0 {
		t.Fatalf("eta with nothing timed = %v", got)
	}
}
