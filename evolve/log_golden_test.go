package evolve

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateLog = flag.Bool("update-log", false, "rewrite evolve/testdata/*.parquet (then regenerate the DuckDB JSON)")

func f64(v float64) *float64 { return &v }

func goldenCandidates() []CandidateRow {
	return []CandidateRow{
		{RunID: "abc123", Generation: 0, Stage: 0, Candidate: 1, Parent: 0, Levels: []int32{5, 6, 4, 5}, Switches: 1, TrainTokens: 10049,
			FitnessTokens: 1024, Params: 156992, Fitness: 1.25, FitnessBeforeTrain: f64(1.5), Survived: true, Seconds: 0.5, Seed: 0},
		{RunID: "abc123", Generation: 0, Stage: 3, Candidate: 0, Parent: -1, Levels: []int32{5, 5, 5, 5}, Switches: 0, TrainTokens: 200125,
			FitnessTokens: 8192, Params: 156000, Fitness: 1.0 / 3, FitnessBeforeTrain: nil, Survived: false, Seconds: 2, Seed: -7},
	}
}

func goldenGenerations() []GenerationRow {
	return []GenerationRow{
		{RunID: "abc123", Generation: -1, Candidate: 0, Levels: []int32{5, 5, 5, 5}, Params: 156000, EvalPPL: f64(25.25), EvalKL: f64(1.625), CalibPPL: f64(21.5), Seconds: 5.5},
		{RunID: "abc123", Generation: 0, Candidate: 1, Levels: []int32{5, 6, 4, 5}, Params: 156992, Fitness: f64(1.25), FitnessBeforeTrain: f64(1.5), Changed: true, Seconds: 30},
	}
}

// duckJSON is testdata/gen/duckdb_read.mjs's output.
type duckJSON struct {
	Columns []struct {
		Name string `json:"column_name"`
		Type string `json:"column_type"`
	} `json:"columns"`
	Rows []map[string]any `json:"rows"`
}

// TestLogParquetReadByDuckDB: the log files are byte-for-byte
// deterministic, and DuckDB (an independent reader; its output is
// committed) sees the documented columns, types, nulls and values.
func TestLogParquetReadByDuckDB(t *testing.T) {
	for _, c := range []struct {
		file  string
		write func(string) error
		types map[string]string
		rows  any
	}{
		{"candidates", func(p string) error { return writeRows(p, goldenCandidates()) }, map[string]string{
			"run_id": "VARCHAR", "generation": "BIGINT", "stage": "BIGINT", "candidate": "BIGINT", "parent": "BIGINT",
			"levels": "INTEGER[]", "switches": "BIGINT", "train_tokens": "BIGINT", "fitness_tokens": "BIGINT", "params": "BIGINT",
			"fitness": "DOUBLE", "fitness_before_train": "DOUBLE", "survived": "BOOLEAN", "seconds": "DOUBLE", "seed": "BIGINT"},
			goldenCandidates()},
		{"generations", func(p string) error { return writeRows(p, goldenGenerations()) }, map[string]string{
			"run_id": "VARCHAR", "generation": "BIGINT", "candidate": "BIGINT", "levels": "INTEGER[]", "params": "BIGINT",
			"fitness": "DOUBLE", "fitness_before_train": "DOUBLE", "changed": "BOOLEAN", "eval_ppl": "DOUBLE", "eval_kl": "DOUBLE",
			"calib_ppl": "DOUBLE", "seconds": "DOUBLE", "seed": "BIGINT"}, goldenGenerations()},
	} {
		p := filepath.Join(t.TempDir(), c.file+".parquet")
		if err := c.write(p); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		golden := filepath.Join("testdata", c.file+".parquet")
		if *updateLog {
			os.WriteFile(golden, got, 0o644)
			continue // then: node testdata/gen/duckdb_read.mjs evolve/testdata/FILE.parquet > evolve/testdata/FILE.duckdb.json
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from %s (not deterministic, or the schema changed: rerun with -update-log and regenerate the DuckDB JSON)", p, golden)
		}
		raw, err := os.ReadFile(filepath.Join("testdata", c.file+".duckdb.json"))
		if err != nil {
			t.Fatal(err)
		}
		var duck duckJSON
		if err := json.Unmarshal(raw, &duck); err != nil {
			t.Fatal(err)
		}
		if len(duck.Columns) != len(c.types) {
			t.Fatalf("%s: DuckDB saw %d columns, want %d", c.file, len(duck.Columns), len(c.types))
		}
		for _, col := range duck.Columns {
			if c.types[col.Name] != col.Type {
				t.Errorf("%s.%s: DuckDB type %s, want %s", c.file, col.Name, col.Type, c.types[col.Name])
			}
		}
		// Compare values through JSON: ours marshalled with the parquet
		// names, DuckDB's as it printed them (BIGINT as strings).
		ours, _ := json.Marshal(c.rows)
		var mine []map[string]any
		json.Unmarshal(ours, &mine)
		if len(mine) != len(duck.Rows) {
			t.Fatalf("%s: DuckDB read %d rows, want %d", c.file, len(duck.Rows), len(mine))
		}
		for i := range mine {
			for _, col := range duck.Columns {
				g := fmt.Sprint(duck.Rows[i][col.Name])
				w := fmt.Sprint(mine[i][goName(col.Name)])
				if g != w {
					t.Errorf("%s row %d %s: DuckDB %s, wrote %s", c.file, i, col.Name, g, w)
				}
			}
		}
	}
}

// goName maps a column name to the Go field name json.Marshal used.
func goName(col string) string {
	m := map[string]string{"run_id": "RunID", "generation": "Generation", "stage": "Stage", "candidate": "Candidate", "parent": "Parent",
		"levels": "Levels", "switches": "Switches", "train_tokens": "TrainTokens", "fitness_tokens": "FitnessTokens", "params": "Params",
		"fitness": "Fitness", "fitness_before_train": "FitnessBeforeTrain", "survived": "Survived", "seconds": "Seconds", "seed": "Seed",
		"changed": "Changed", "eval_ppl": "EvalPPL", "eval_kl": "EvalKL", "calib_ppl": "CalibPPL"}
	return m[col]
}
