package evolve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// The search log, the source of truth for --resume. In the folder --log:
//
//	settings.json        the run's settings (written before any compute)
//	candidates.parquet   one row per candidate per stage (CandidateRow)
//	generations.parquet  one row per generation (GenerationRow); generation
//	                     −1 is the initial parent
//
// Both Parquet files are rewritten whole after every generation (temporary
// file, fsync, rename), candidates first; a generation is complete once its
// row is in generations.parquet, so a crash loses at most the generation in
// flight, and candidate rows of an incomplete generation are dropped on
// resume.
const (
	SettingsFile    = "settings.json"
	CandidatesFile  = "candidates.parquet"
	GenerationsFile = "generations.parquet"
)

// CandidateRow is one row of candidates.parquet: one candidate scored in one
// stage.
type CandidateRow struct {
	RunID      string `parquet:"run_id"`
	Generation int64  `parquet:"generation"` // 0-based; −1 for the initial population of a non-integer target
	Stage      int64  `parquet:"stage"`      // 0-based
	Candidate  int64  `parquet:"candidate"`  // unique in the run: initial configurations 0…K−1, then K + generation·λ + i
	Parent     int64  `parquet:"parent"`     // candidate it was mutated from; −1 for the parent itself (elitism) and initial configurations
	// Levels in the order of the level-configuration file.
	Levels        []int32 `parquet:"levels,list"`
	Switches      int64   `parquet:"switches"`       // level switches of the mutation (0 for the parent)
	TrainTokens   int64   `parquet:"train_tokens"`   // tokens fine-tuned on before scoring (whole sequences, ≥ the budget)
	FitnessTokens int64   `parquet:"fitness_tokens"` // tokens of the fitness minibatch
	Params        int64   `parquet:"params"`         // parameters of the stitched model
	Fitness       float64 `parquet:"fitness"`        // after fine-tuning; lower is better
	// FitnessBeforeTrain is the fitness of the database weights, before
	// fine-tuning; null when not measured (--fitness-before off).
	FitnessBeforeTrain *float64 `parquet:"fitness_before_train,optional"`
	Survived           bool     `parquet:"survived"` // among the stage's survivors
	Seconds            float64  `parquet:"seconds"`  // wall time of this evaluation
	Seed               int64    `parquet:"seed"`     // the run's --seed
}

// GenerationRow is one row of generations.parquet: the parent after a
// generation (generation −1: the initial parent).
type GenerationRow struct {
	RunID      string  `parquet:"run_id"`
	Generation int64   `parquet:"generation"`
	Candidate  int64   `parquet:"candidate"` // the parent's candidate id
	Levels     []int32 `parquet:"levels,list"`
	Params     int64   `parquet:"params"`
	// Fitness is the parent's last-stage fitness (after fine-tuning); null
	// for an initial parent that was not scored.
	Fitness            *float64 `parquet:"fitness,optional"`
	FitnessBeforeTrain *float64 `parquet:"fitness_before_train,optional"`
	Changed            bool     `parquet:"changed"` // an offspring replaced the previous parent
	// Held-out evaluation of the parent's database weights (no fine-tuning),
	// every --eval-every generations, at the start and at the end; null
	// otherwise: perplexity and KL(dense ‖ parent) on the held-out pool, and
	// perplexity on the fitness pool (the reference's ppl_train).
	EvalPPL  *float64 `parquet:"eval_ppl,optional"`
	EvalKL   *float64 `parquet:"eval_kl,optional"`
	CalibPPL *float64 `parquet:"calib_ppl,optional"`
	Seconds  float64  `parquet:"seconds"` // wall time of the generation
	Seed     int64    `parquet:"seed"`
}

// ReadCandidates and ReadGenerations read a log's files.
func ReadCandidates(path string) ([]CandidateRow, error) {
	rows, err := parquet.ReadFile[CandidateRow](path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return rows, nil
}

func ReadGenerations(path string) ([]GenerationRow, error) {
	rows, err := parquet.ReadFile[GenerationRow](path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return rows, nil
}

func writeRows[T any](path string, rows []T) error {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf)
	if _, err := w.Write(rows); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// searchLog holds the rows written so far.
type searchLog struct {
	dir   string // "" keeps the log in memory only
	cands []CandidateRow
	gens  []GenerationRow
}

// openLog prepares the log folder. A folder holding another run's log is
// refused without resume; with resume, settings must match except the keys
// in mayChange, and the completed generations are loaded.
func openLog(dir string, settings map[string]any, resume bool, mayChange ...string) (*searchLog, error) {
	l := &searchLog{dir: dir}
	if dir == "" {
		return l, nil
	}
	want, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		return nil, err
	}
	sp := filepath.Join(dir, SettingsFile)
	old, err := os.ReadFile(sp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for _, f := range []string{CandidatesFile, GenerationsFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				return nil, fmt.Errorf("--log %s: holds %s but no %s (not a search log of this program, or damaged); choose another folder", dir, f, SettingsFile)
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("--log %s: %w", dir, err)
		}
		return l, atomicfile.WriteFile(sp, append(want, '\n'))
	case err != nil:
		return nil, fmt.Errorf("--log %s: %w", dir, err)
	}
	if !resume {
		return nil, fmt.Errorf("--log %s already holds a search (%s); pass --resume to continue it, or choose another folder", dir, SettingsFile)
	}
	was, err := decodeSettings(old)
	if err != nil {
		return nil, fmt.Errorf("--resume: %s: %w", sp, err)
	}
	now, _ := decodeSettings(want) // compared as JSON, numbers exactly
	if err := diffSettings(was, now, mayChange); err != nil {
		return nil, fmt.Errorf("--resume: %s: %w", sp, err)
	}
	if err := l.load(); err != nil {
		return nil, err
	}
	// The settings that may change (e.g. --generations) are updated.
	return l, atomicfile.WriteFile(sp, append(want, '\n'))
}

func decodeSettings(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// diffSettings names every setting that differs.
func diffSettings(was, now map[string]any, mayChange []string) error {
	keys := map[string]bool{}
	for k := range was {
		keys[k] = true
	}
	for k := range now {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var diffs []string
	for _, k := range names {
		if slices.Contains(mayChange, k) {
			continue
		}
		a, _ := json.Marshal(was[k])
		b, _ := json.Marshal(now[k])
		if !bytes.Equal(a, b) {
			diffs = append(diffs, fmt.Sprintf("%s (log: %s, now: %s)", k, a, b))
		}
	}
	switch len(diffs) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("the log was written with another setting: %s; rerun with the log's setting or use another --log", diffs[0])
	}
	return fmt.Errorf("the log was written with other settings: %v; rerun with the log's settings or use another --log", diffs)
}

// load reads the completed generations and the candidate rows that belong
// to them.
func (l *searchLog) load() error {
	gp := filepath.Join(l.dir, GenerationsFile)
	if _, err := os.Stat(gp); errors.Is(err, fs.ErrNotExist) {
		return nil // killed before the first generation completed
	}
	gens, err := ReadGenerations(gp)
	if err != nil {
		return err
	}
	cands, err := ReadCandidates(filepath.Join(l.dir, CandidatesFile))
	if err != nil && len(gens) > 0 {
		return err
	}
	last := int64(-2)
	for i, g := range gens {
		if i > 0 && g.Generation != gens[i-1].Generation+1 {
			return fmt.Errorf("%s: generation %d follows %d", gp, g.Generation, gens[i-1].Generation)
		}
		last = g.Generation
	}
	for _, c := range cands {
		if c.Generation <= last {
			l.cands = append(l.cands, c)
		}
	}
	l.gens = gens
	return nil
}

// commit appends a completed generation and rewrites the files.
func (l *searchLog) commit(cands []CandidateRow, gen GenerationRow) error {
	l.cands = append(l.cands, cands...)
	l.gens = append(l.gens, gen)
	if l.dir == "" {
		return nil
	}
	if err := writeRows(filepath.Join(l.dir, CandidatesFile), l.cands); err != nil {
		return err
	}
	return writeRows(filepath.Join(l.dir, GenerationsFile), l.gens)
}
