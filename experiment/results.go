package experiment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// The results folder results/<experiment>/<profile>/ holds:
//
//	rows.parquet    one line per (table row, task, metric); not-run rows carry their reason
//	stages.parquet  one line per stage of the DAG: kind, hash, status, seconds
//	train.parquet   the post-training logs (stage, step, tokens, loss, lr)
//	search.parquet  the search logs (stage, generation, selection stage, fitness)
//	levels.parquet  per-module levels of the pruned models (stage, module, layer, kind, level)
//
// Every file carries the key-value metadata below (MetaKeys).
const (
	RowsFile   = "rows.parquet"
	StagesFile = "stages.parquet"
	TrainFile  = "train.parquet"
	SearchFile = "search.parquet"
	LevelsFile = "levels.parquet"
)

// MetaKeys are the key-value metadata of every results file.
var MetaKeys = []string{"experiment", "experiment_version", "profile", "commit", "date", "machine", "spec", "backend"}

// ResultRow is one line of rows.parquet.
type ResultRow struct {
	Row       int32    `parquet:"row"`
	Label     string   `parquet:"label"`
	Group     string   `parquet:"group"`
	Paper     string   `parquet:"paper"`
	Stage     string   `parquet:"stage"`
	StageHash string   `parquet:"stage_hash"`
	Status    string   `parquet:"status"` // done or not_run
	Reason    string   `parquet:"reason"`
	Params    int64    `parquet:"params"`
	Task      string   `parquet:"task"`
	Metric    string   `parquet:"metric"`
	Value     *float64 `parquet:"value,optional"`
	Stderr    *float64 `parquet:"stderr,optional"`
	N         int64    `parquet:"n"`
	Main      bool     `parquet:"main"`
}

// StageRow is one line of stages.parquet.
type StageRow struct {
	ID      string  `parquet:"id"`
	Kind    string  `parquet:"kind"`
	Hash    string  `parquet:"hash"`
	Status  string  `parquet:"status"`
	Reason  string  `parquet:"reason"`
	Seconds float64 `parquet:"seconds"` // when the stage was computed (cached stages keep their time)
	Params  int64   `parquet:"params"`
}

// TrainLogRow is one line of train.parquet.
type TrainLogRow struct {
	Stage  string  `parquet:"stage"`
	Step   int64   `parquet:"step"`
	Tokens int64   `parquet:"tokens"`
	Loss   float64 `parquet:"loss"`
	LR     float64 `parquet:"lr"`
}

// SearchLogRow is one line of search.parquet.
type SearchLogRow struct {
	Stage      string  `parquet:"stage"`
	Generation int64   `parquet:"generation"`
	Phase      int32   `parquet:"selection_stage"`
	Candidate  int32   `parquet:"candidate"`
	Fitness    float64 `parquet:"fitness"`
	Params     int64   `parquet:"params"`
	Best       bool    `parquet:"best"`
}

// LevelRow is one line of levels.parquet.
type LevelRow struct {
	Stage  string `parquet:"stage"`
	Module string `parquet:"module"`
	Layer  int32  `parquet:"layer"`
	Kind   string `parquet:"kind"` // attn or mlp
	Level  int32  `parquet:"level"`
}

func metaOptions(kv map[string]string) []parquet.WriterOption {
	var o []parquet.WriterOption
	for _, k := range MetaKeys {
		o = append(o, parquet.KeyValueMetadata(k, kv[k]))
	}
	return o
}

func writeParquet[T any](path string, rows []T, kv map[string]string) error {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, metaOptions(kv)...)
	if _, err := w.Write(rows); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// writeResults writes the Parquet files of a run.
func writeResults(res *Outcome, o Options, start time.Time) error {
	pl := res.Plan
	s := pl.Spec
	kv := map[string]string{"experiment": s.Name, "experiment_version": strconv.Itoa(s.Version), "profile": pl.Name,
		"commit": o.Commit, "date": start.UTC().Format(time.RFC3339), "machine": o.Machine, "spec": filepath.ToSlash(s.path),
		"backend": o.Backend.Name()}
	if err := os.MkdirAll(res.Dir, 0o755); err != nil {
		return err
	}
	var rows []ResultRow
	for i, r := range s.Table.Rows {
		ev := res.Outputs[EvalID(r.From)]
		from := res.Outputs[r.From]
		base := ResultRow{Row: int32(i), Label: r.Label, Group: r.Group, Paper: r.Paper, Stage: r.From,
			StageHash: from.Meta.Hash, Status: ev.Meta.Status, Reason: ev.Meta.Reason}
		if ev.Meta.Status != "done" {
			rows = append(rows, base)
			continue
		}
		var er EvalResult
		if err := readJSON(filepath.Join(ev.Dir, "metrics.json"), &er); err != nil {
			return err
		}
		base.Params = er.Params
		for _, m := range er.Metrics {
			r := base
			v, se := m.Value, m.Stderr
			r.Task, r.Metric, r.Value, r.Stderr, r.N, r.Main = m.Task, m.Metric, &v, &se, m.N, m.Main
			rows = append(rows, r)
		}
	}
	var stages []StageRow
	var tlog []TrainLogRow
	var slog []SearchLogRow
	var levels []LevelRow
	for _, n := range pl.Nodes {
		out := res.Outputs[n.Stage.ID]
		stages = append(stages, StageRow{ID: n.Stage.ID, Kind: n.Stage.Kind, Hash: n.Hash, Status: out.Meta.Status,
			Reason: out.Meta.Reason, Seconds: out.Meta.Seconds, Params: out.Meta.Params})
		if out.Dir == "" {
			continue
		}
		var tr []TrainRow
		if err := readJSON(filepath.Join(out.Dir, "train_log.json"), &tr); err == nil {
			for _, t := range tr {
				tlog = append(tlog, TrainLogRow{Stage: n.Stage.ID, Step: t.Step, Tokens: t.Tokens, Loss: t.Loss, LR: t.LR})
			}
		}
		var sr []SearchLogRow
		if err := readJSON(filepath.Join(out.Dir, "search_log.json"), &sr); err == nil {
			for _, x := range sr {
				x.Stage = n.Stage.ID
				slog = append(slog, x)
			}
		}
		var lv []LevelRow
		if err := readJSON(filepath.Join(out.Dir, "levels.json"), &lv); err == nil {
			for _, x := range lv {
				x.Stage = n.Stage.ID
				levels = append(levels, x)
			}
		}
	}
	if err := writeParquet(filepath.Join(res.Dir, RowsFile), rows, kv); err != nil {
		return err
	}
	if err := writeParquet(filepath.Join(res.Dir, StagesFile), stages, kv); err != nil {
		return err
	}
	if err := writeParquet(filepath.Join(res.Dir, TrainFile), tlog, kv); err != nil {
		return err
	}
	if err := writeParquet(filepath.Join(res.Dir, SearchFile), slog, kv); err != nil {
		return err
	}
	return writeParquet(filepath.Join(res.Dir, LevelsFile), levels, kv)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ReadMeta returns the key-value metadata of a results file.
func ReadMeta(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	kv := map[string]string{}
	for _, k := range MetaKeys {
		if v, ok := pf.Lookup(k); ok {
			kv[k] = v
		}
	}
	return kv, nil
}

// CheckResultsVersion refuses a results folder written by another experiment
// or another version of this one (their cached stages and rows would mix).
func CheckResultsVersion(dir string, s *Spec) error {
	path := filepath.Join(dir, RowsFile)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	kv, err := ReadMeta(path)
	if err != nil {
		return err
	}
	if kv["experiment"] != s.Name || kv["experiment_version"] != strconv.Itoa(s.Version) {
		return fmt.Errorf("results folder %s was written by experiment %q version %s, but %s is %q version %d: move that folder away or delete it, then run again",
			dir, kv["experiment"], kv["experiment_version"], s.path, s.Name, s.Version)
	}
	return nil
}

// Results is what a report reads.
type Results struct {
	Meta   map[string]string
	Rows   []ResultRow
	Stages []StageRow
	Train  []TrainLogRow
	Search []SearchLogRow
	Levels []LevelRow
}

// ReadResults reads a results folder (Parquet only; no model is loaded) and
// checks it belongs to this version of the experiment.
func ReadResults(dir string, s *Spec) (*Results, error) {
	path := filepath.Join(dir, RowsFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no results in %s (run the experiment first): %w", dir, err)
	}
	if err := CheckResultsVersion(dir, s); err != nil {
		return nil, err
	}
	r := &Results{}
	var err error
	if r.Meta, err = ReadMeta(path); err != nil {
		return nil, err
	}
	if r.Rows, err = parquet.ReadFile[ResultRow](path); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Stages, err = readOptional[StageRow](filepath.Join(dir, StagesFile)); err != nil {
		return nil, err
	}
	if r.Train, err = readOptional[TrainLogRow](filepath.Join(dir, TrainFile)); err != nil {
		return nil, err
	}
	if r.Search, err = readOptional[SearchLogRow](filepath.Join(dir, SearchFile)); err != nil {
		return nil, err
	}
	if r.Levels, err = readOptional[LevelRow](filepath.Join(dir, LevelsFile)); err != nil {
		return nil, err
	}
	return r, nil
}

func readOptional[T any](path string) ([]T, error) {
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil, nil
	}
	rows, err := parquet.ReadFile[T](path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b)
}
