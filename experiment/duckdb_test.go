package experiment

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestResultsReadByDuckDB: every committed results file was read by DuckDB
// (experiment/testdata/gen/duckdb_results.sh, output committed); parquet-go
// must read the same columns, DuckDB types, row count, values and key-value
// metadata from the file as it is now. A rerun of an experiment changes the
// files: regenerate the JSON with the script.
func TestResultsReadByDuckDB(t *testing.T) {
	jsons, _ := filepath.Glob("testdata/duckdb/*.json")
	if len(jsons) == 0 {
		t.Skip("no DuckDB readings committed yet")
	}
	types := map[string]any{RowsFile: ResultRow{}, StagesFile: StageRow{}, TrainFile: TrainLogRow{},
		SearchFile: SearchLogRow{}, LevelsFile: LevelRow{}}
	for _, j := range jsons {
		raw, err := os.ReadFile(j)
		if err != nil {
			t.Fatal(err)
		}
		var duck struct {
			Source  string
			Count   int
			Columns []struct{ Name, Type string }
			KV      []struct{ Key, Value string }
			Rows    []map[string]any
		}
		if err := json.Unmarshal(raw, &duck); err != nil {
			t.Fatalf("%s: %v", j, err)
		}
		path := filepath.Join("..", filepath.FromSlash(duck.Source))
		proto, ok := types[filepath.Base(path)]
		if !ok {
			t.Fatalf("%s: unknown results file %s", j, path)
		}
		// Columns and types from the Go struct.
		rt := reflect.TypeOf(proto)
		if len(duck.Columns) != rt.NumField() {
			t.Fatalf("%s: DuckDB saw %d columns, the struct has %d", j, len(duck.Columns), rt.NumField())
		}
		for i, c := range duck.Columns {
			f := rt.Field(i)
			name := strings.Split(f.Tag.Get("parquet"), ",")[0]
			if c.Name != name || c.Type != duckType(f.Type) {
				t.Errorf("%s: column %d is %s %s, want %s %s", j, i, c.Name, c.Type, name, duckType(f.Type))
			}
		}
		kv, err := ReadMeta(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range duck.KV {
			if kv[m.Key] != m.Value {
				t.Errorf("%s: metadata %s: DuckDB %q, parquet-go %q", j, m.Key, m.Value, kv[m.Key])
			}
		}
		for _, k := range []string{"experiment", "profile", "commit", "date", "machine"} {
			if kv[k] == "" {
				t.Errorf("%s: metadata %s is empty", path, k)
			}
		}
		rows := readRowsAny(t, path, proto)
		if duck.Count != len(rows) || len(duck.Rows) != len(rows) {
			t.Fatalf("%s: DuckDB counted %d rows, parquet-go read %d", j, duck.Count, len(rows))
		}
		for i, r := range rows {
			v := reflect.ValueOf(r)
			for k, c := range duck.Columns {
				if !sameValue(v.Field(k), duck.Rows[i][c.Name]) {
					t.Errorf("%s row %d %s: DuckDB %v, parquet-go %v", j, i, c.Name, duck.Rows[i][c.Name], v.Field(k))
				}
			}
		}
	}
}

func duckType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "VARCHAR"
	case reflect.Int32:
		return "INTEGER"
	case reflect.Int64:
		return "BIGINT"
	case reflect.Float64:
		return "DOUBLE"
	case reflect.Bool:
		return "BOOLEAN"
	}
	return "?" + t.String()
}

func readRowsAny(t *testing.T, path string, proto any) []any {
	t.Helper()
	var out []any
	var err error
	switch proto.(type) {
	case ResultRow:
		out, err = readAs[ResultRow](path)
	case StageRow:
		out, err = readAs[StageRow](path)
	case TrainLogRow:
		out, err = readAs[TrainLogRow](path)
	case SearchLogRow:
		out, err = readAs[SearchLogRow](path)
	case LevelRow:
		out, err = readAs[LevelRow](path)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readAs[T any](path string) ([]any, error) {
	rows, err := parquet.ReadFile[T](path)
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return out, err
}

// sameValue compares a Go field with DuckDB's JSON value (BIGINT as a
// string, NULL as nil).
func sameValue(v reflect.Value, d any) bool {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return d == nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		return d == v.String()
	case reflect.Bool:
		return d == v.Bool()
	case reflect.Int32, reflect.Int64:
		return num(d) == float64(v.Int())
	case reflect.Float64:
		return num(d) == v.Float()
	}
	return false
}

func num(d any) float64 {
	switch x := d.(type) {
	case float64:
		return x
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return -1e308
		}
		return f
	}
	return -1e308
}
