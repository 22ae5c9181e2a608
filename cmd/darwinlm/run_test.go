package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// darwinlm run and report refuse bad input before any compute, naming it.
func TestRunReportBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nversion: 1\nprofilez: {}\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", bad}, "[3:1] unknown field \"profilez\""},
		{[]string{"run", "../../experiments/table2.yaml", "--profile", "huge"}, `no profile "huge"`},
		{[]string{"run", "../../experiments/table2.yaml", "--profile", "paper", "--results", dir}, "not runnable"},
		{[]string{"run", "../../experiments/table2.yaml", "--backend", "tpu", "--results", dir}, "tpu"},
		{[]string{"report", "../../experiments/table2.yaml", "--profile", "smoke", "--results", dir}, "no results"},
		{[]string{"run", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
	} {
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// report renders the committed Table 2 from its Parquet files alone.
func TestReportCommittedTable2(t *testing.T) {
	if _, err := os.Stat("../../results/table2/local/rows.parquet"); err != nil {
		t.Skip("no committed results")
	}
	out, err := run(t, "report", "../../experiments/table2.yaml", "--profile", "local", "--results", "../../results")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ours (local)", "DarwinLM (one-shot)", "paper", "63.7"} {
		if !strings.Contains(out, want) {
			t.Errorf("report output lacks %q", want)
		}
	}
}
