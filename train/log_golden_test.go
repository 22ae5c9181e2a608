package train

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateLog = flag.Bool("update-log", false, "rewrite train/testdata/train_log.parquet")

// goldenLogRows are fixed rows, with values that stress float formatting.
func goldenLogRows() []LogRow {
	return []LogRow{
		{Step: 1, Tokens: 2048, Loss: 7.6245, LR: 1e-4, GradNorm: 3.25, TokensPerS: 1234.5},
		{Step: 2, Tokens: 4096, Loss: 6.000000001, LR: 2.5e-4, GradNorm: 0.125, TokensPerS: 1300},
		{Step: 3, Tokens: 6144, Loss: 1.0 / 3, LR: 3e-4, GradNorm: 1e-9, TokensPerS: 0},
	}
}

// TestTrainLogParquetReadByDuckDB: the training log written by WriteLog is
// byte-for-byte the committed file, and DuckDB (testdata/gen/duckdb_read.mjs,
// output committed) read the same rows and column types from it.
func TestTrainLogParquetReadByDuckDB(t *testing.T) {
	p := filepath.Join(t.TempDir(), "train_log.parquet")
	if err := WriteLog(p, goldenLogRows()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "train_log.parquet")
	if *updateLog {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("WriteLog output differs from %s (not deterministic, or the format changed: rerun with -update-log and regenerate the DuckDB JSON)", golden)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "train_log.duckdb.json"))
	if err != nil {
		t.Fatal(err)
	}
	var duck struct {
		Columns []struct {
			Name string `json:"column_name"`
			Type string `json:"column_type"`
		} `json:"columns"`
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(raw, &duck); err != nil {
		t.Fatal(err)
	}
	wantCols := map[string]string{"step": "BIGINT", "tokens": "BIGINT", "loss": "DOUBLE", "lr": "DOUBLE", "grad_norm": "DOUBLE", "tokens_per_s": "DOUBLE"}
	if len(duck.Columns) != len(wantCols) {
		t.Fatalf("DuckDB saw columns %+v", duck.Columns)
	}
	for _, c := range duck.Columns {
		if wantCols[c.Name] != c.Type {
			t.Errorf("column %s: DuckDB type %s, want %s", c.Name, c.Type, wantCols[c.Name])
		}
	}
	rows := goldenLogRows()
	if len(duck.Rows) != len(rows) {
		t.Fatalf("DuckDB read %d rows, want %d", len(duck.Rows), len(rows))
	}
	num := func(v any) float64 {
		switch x := v.(type) {
		case float64:
			return x
		case string: // DuckDB's JSON gives BIGINT as strings
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				t.Fatalf("bad number %q", x)
			}
			return f
		}
		t.Fatalf("unexpected JSON value %T %v", v, v)
		return 0
	}
	for i, r := range rows {
		d := duck.Rows[i]
		for name, want := range map[string]float64{"step": float64(r.Step), "tokens": float64(r.Tokens), "loss": r.Loss,
			"lr": r.LR, "grad_norm": r.GradNorm, "tokens_per_s": r.TokensPerS} {
			if g := num(d[name]); g != want {
				t.Errorf("row %d %s: DuckDB %v, wrote %v", i, name, g, want)
			}
		}
	}
}
