package report

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/experiment"
)

func needMirror(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set (the smoke profiles read the models and data from the mirror)")
	}
}

// TestSmokeProfiles runs the smoke profile of every experiment end to end,
// reruns it (every stage must come from the cache, with the same rows), and
// renders the report twice: the Markdown and figures must be byte-identical.
func TestSmokeProfiles(t *testing.T) {
	needMirror(t)
	be, err := backend.Get("cpu")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../experiments/*.yaml")
	root := t.TempDir()
	for _, f := range files {
		s, err := experiment.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(s.Name, func(t *testing.T) {
			t0 := time.Now()
			var log bytes.Buffer
			out, err := experiment.Run(context.Background(), s, experiment.Options{Profile: "smoke", Backend: be, Results: root, Log: &log})
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			t.Logf("%s smoke: %.1f s", s.Name, time.Since(t0).Seconds())
			first, err := experiment.ReadResults(out.Dir, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := countLabels(first.Rows); got != len(s.Table.Rows) {
				t.Fatalf("rows.parquet has %d table rows, want %d", got, len(s.Table.Rows))
			}
			again, err := experiment.Run(context.Background(), s, experiment.Options{Profile: "smoke", Backend: be, Results: root, Log: &log})
			if err != nil {
				t.Fatal(err)
			}
			for id, o := range again.Outputs {
				if o.Meta.Status == "done" && !o.Meta.Cached {
					t.Errorf("rerun recomputed stage %s", id)
				}
			}
			second, err := experiment.ReadResults(out.Dir, s)
			if err != nil {
				t.Fatal(err)
			}
			if !sameRows(first.Rows, second.Rows) {
				t.Error("rerun changed the rows")
			}
			var md [2][]byte
			for i := range md {
				dir := filepath.Join(root, "render", s.Name, string(rune('a'+i)))
				if err := Render(s, "smoke", root, Options{OutDir: dir}); err != nil {
					t.Fatal(err)
				}
				md[i] = readAll(t, dir)
			}
			if !bytes.Equal(md[0], md[1]) {
				t.Error("rendering twice gave different bytes")
			}
		})
	}
}

func countLabels(rows []experiment.ResultRow) int {
	seen := map[int32]bool{}
	for _, r := range rows {
		seen[r.Row] = true
	}
	return len(seen)
}

func sameRows(a, b []experiment.ResultRow) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Label != y.Label || x.Task != y.Task || x.Metric != y.Metric || x.Status != y.Status || x.Params != y.Params ||
			(x.Value == nil) != (y.Value == nil) || (x.Value != nil && *x.Value != *y.Value) {
			return false
		}
	}
	return true
}

// readAll concatenates the files of dir (names and contents) in name order.
func readAll(t *testing.T, dir string) []byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range ents {
		c, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + "\n")
		b.Write(c)
	}
	if !strings.Contains(b.String(), ".md") {
		t.Fatalf("no Markdown in %s", dir)
	}
	return b.Bytes()
}
