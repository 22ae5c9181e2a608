package experiment

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/evolve"
)

// An experiment interrupted during the search, then run again, ends with
// the same rows as an uninterrupted run: finished stages come from the
// cache and the search resumes from its log.
func TestInterruptedSearchResumes(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	s, err := Load("../experiments/table2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.Get("cpu")
	if err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	want, err := Run(context.Background(), s, Options{Profile: "smoke", Backend: be, BackendName: "cpu", Results: full})
	if err != nil {
		t.Fatal(err)
	}
	wantRows, err := ReadResults(want.Dir, s)
	if err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	gens := 0
	afterGeneration = func(g evolve.GenerationRow) {
		if g.Generation >= 0 {
			gens++
			cancel() // after the first generation
		}
	}
	defer func() { afterGeneration = nil }()
	if _, err := Run(ctx, s, Options{Profile: "smoke", Backend: be, BackendName: "cpu", Results: root}); err == nil {
		t.Fatal("the interrupted run reported success")
	}
	if gens == 0 {
		t.Fatal("the search never completed a generation before the interruption")
	}
	partial, _ := filepath.Glob(filepath.Join(root, "cache", "search-*.partial", "search", evolve.GenerationsFile))
	if len(partial) != 1 {
		t.Fatalf("no partial search log left behind: %v", partial)
	}
	afterGeneration = nil
	got, err := Run(context.Background(), s, Options{Profile: "smoke", Backend: be, BackendName: "cpu", Results: root})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Outputs["db"].Meta.Cached {
		t.Error("the database was recomputed after the interruption")
	}
	gotRows, err := ReadResults(got.Dir, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotRows.Rows) != len(wantRows.Rows) {
		t.Fatalf("%d rows after resuming, %d uninterrupted", len(gotRows.Rows), len(wantRows.Rows))
	}
	for i, w := range wantRows.Rows {
		g := gotRows.Rows[i]
		if g.Label != w.Label || g.Metric != w.Metric || g.Status != w.Status || (w.Value == nil) != (g.Value == nil) ||
			(w.Value != nil && *w.Value != *g.Value) || g.Params != w.Params {
			t.Errorf("row %d: resumed %+v, uninterrupted %+v", i, g, w)
		}
	}
	for i, w := range wantRows.Search {
		if g := gotRows.Search[i]; g != w {
			t.Errorf("search log %d: resumed %+v, uninterrupted %+v", i, g, w)
		}
	}
}
