package report

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/darwinlm/darwinlm-go/experiment"
)

// TestCommittedReportsRegenerate renders every committed local-profile
// result from its Parquet files alone and compares each output with the
// committed table and figures, byte for byte (what `make tables` does).
func TestCommittedReportsRegenerate(t *testing.T) {
	files, _ := filepath.Glob("../experiments/*.yaml")
	n := 0
	for _, f := range files {
		s, err := experiment.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		dir := experiment.ResultsDir("../results", s, "local")
		if _, err := os.Stat(filepath.Join(dir, experiment.RowsFile)); err != nil {
			continue
		}
		n++
		out := t.TempDir()
		if err := Render(s, "local", "../results", Options{OutDir: out}); err != nil {
			t.Fatal(err)
		}
		made, _ := os.ReadDir(out)
		for _, e := range made {
			got, _ := os.ReadFile(filepath.Join(out, e.Name()))
			want, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Errorf("%s: rendered %s is not committed (run make tables)", s.Name, e.Name())
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: %s differs from the committed file (run make tables)", s.Name, e.Name())
			}
		}
	}
	if n == 0 {
		t.Skip("no committed results")
	}
}
