// Package experiment runs declarative experiments (one YAML file per paper
// table or ablation) as a small DAG of cached stages and writes their results
// as Parquet files under results/<experiment>/<profile>/.
//
// A spec names the stages (database, oneshot, shear, search, posttrain) once;
// every profile (paper, local, smoke) gives the model, the data and the
// budgets. The table's rows name the stage whose model they evaluate; the
// runner adds one eval stage per row. Each stage's output lives in
// results/cache/<hash>/, where the hash covers the stage's kind, its resolved
// settings, the hashes of its inputs and the spec's version, so a rerun
// reuses finished stages, an interrupted run resumes at the first unfinished
// one, and experiments that share a stage (the database) share its output.
package experiment

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
)

// Spec is one experiment file.
type Spec struct {
	Name    string `yaml:"name"`    // results/<name>/...
	Version int    `yaml:"version"` // bump when a change makes old results invalid
	Title   string `yaml:"title"`
	// Paper selects the paper's rows shown beside ours.
	Paper    PaperRef            `yaml:"paper"`
	Profiles map[string]*Profile `yaml:"profiles"`
	Stages   []*Stage            `yaml:"stages"`
	Table    Table               `yaml:"table"`

	path string
}

// PaperRef points into the paper's reference rows (experiments/paper-reference.csv).
type PaperRef struct {
	File  string `yaml:"file"`  // relative to the spec's folder
	Table string `yaml:"table"` // the csv's table column
	Model string `yaml:"model"` // the csv's model column ("" = any)
	Note  string `yaml:"note"`
}

// Profile is one scale of the experiment: model, data and budgets.
type Profile struct {
	Description string  `yaml:"description"`
	Model       string  `yaml:"model"`     // hf:ORG/NAME, folder or llama2.c .bin
	Tokenizer   string  `yaml:"tokenizer"` // optional
	Target      float64 `yaml:"target"`    // target size, fraction of the dense parameter count
	SeqLen      int     `yaml:"seq_len"`
	Seed        int64   `yaml:"seed"`
	Data        Data    `yaml:"data"`
	// Runnable is false for profiles this machine cannot run (paper scale).
	Runnable  *bool           `yaml:"runnable"`
	Database  DatabaseParams  `yaml:"database"`
	Search    SearchParams    `yaml:"search"`
	Shear     ShearParams     `yaml:"shear"`
	PostTrain PostTrainParams `yaml:"posttrain"`
	Eval      EvalParams      `yaml:"eval"`
}

// Data names the text sources (any spec data.ReadTexts accepts, with ranges).
type Data struct {
	Calib   string `yaml:"calib"`   // database calibration and search fitness/fine-tuning pool
	Train   string `yaml:"train"`   // post-training corpus
	Heldout string `yaml:"heldout"` // held-out perplexity and KL to dense
}

// DatabaseParams are the pruning database's settings.
type DatabaseParams struct {
	CalibTokens int     `yaml:"calib_tokens"`
	Levels      int     `yaml:"levels"` // levels per module including 0 (dense) and the top (removed)
	Damp        float64 `yaml:"damp"`   // relative damping
	Sampler     string  `yaml:"sampler"`
}

// SearchParams are the evolutionary search's settings.
type SearchParams struct {
	Generations   int     `yaml:"generations"`
	Offspring     int     `yaml:"offspring"`
	Survivors     []int   `yaml:"survivors"`      // per selection stage
	FitnessTokens []int   `yaml:"fitness_tokens"` // per selection stage
	TrainTokens   []int   `yaml:"train_tokens"`   // per selection stage (training-aware selection)
	Fitness       string  `yaml:"fitness"`        // kl or ppl
	LR            float64 `yaml:"lr"`             // selection fine-tuning learning rate
	MaxFlips      int     `yaml:"max_flips"`      // mutation flips drawn in [1, max_flips]
	Sampler       string  `yaml:"sampler"`        // first or random
	// Pools sampled once from data.calib (fitness and fine-tuning pools
	// from its first half, as the reference) and data.heldout.
	FitnessPool int `yaml:"fitness_pool_tokens"`
	TrainPool   int `yaml:"train_pool_tokens"`
	EvalPool    int `yaml:"eval_pool_tokens"`
	EvalEvery   int `yaml:"eval_every"` // held-out figures of the parent every N generations
}

// ShearParams are ShearedLlama's pruning-stage settings.
type ShearParams struct {
	Steps     int     `yaml:"steps"`
	LR        float64 `yaml:"lr"`
	LagrLR    float64 `yaml:"lagrangian_lr"`
	Batch     int     `yaml:"batch"`
	WarmupPct float64 `yaml:"warmup_pct"`
}

// PostTrainParams are the post-training settings, the same for every row.
type PostTrainParams struct {
	Tokens   int     `yaml:"tokens"`
	Batch    int     `yaml:"batch"`
	LR       float64 `yaml:"lr"`
	MinLR    float64 `yaml:"min_lr"`
	Schedule string  `yaml:"schedule"`
	Warmup   int     `yaml:"warmup"`
	Clip     float64 `yaml:"clip"`
	Beta2    float64 `yaml:"beta2"`
	WD       float64 `yaml:"weight_decay"`
}

// EvalParams is the evaluation suite.
type EvalParams struct {
	Suite          string   `yaml:"suite"`           // eval suite name (eval/suites.yaml)
	Limit          int      `yaml:"limit"`           // documents per task (0 = all)
	HeldoutWindows int      `yaml:"heldout_windows"` // windows of seq_len for ppl and KL (0 = all)
	Tasks          []string `yaml:"tasks"`           // optional subset of the suite
	// TaskLimits overrides Limit per task (for mmlu: documents per subject).
	TaskLimits map[string]int `yaml:"task_limits"`
}

// Stage is one node of the DAG.
type Stage struct {
	ID     string   `yaml:"id"`
	Kind   string   `yaml:"kind"` // dense, database, oneshot, shear, search, posttrain
	Needs  []string `yaml:"needs"`
	Method string   `yaml:"method"` // oneshot: uniform or dp
	// Overrides of the profile's search settings (ablations).
	Search *SearchOverride `yaml:"search"`
	Note   string          `yaml:"note"`
}

// SearchOverride changes a few search settings for one stage.
type SearchOverride struct {
	TrainingAware *bool   `yaml:"training_aware"` // false: train_tokens all 0 (EvoPress-style selection)
	Fitness       *string `yaml:"fitness"`
	Stages        *int    `yaml:"stages"` // number of selection stages (keeps the first N of each list)
}

// Table says what the rendered table shows.
type Table struct {
	Caption string `yaml:"caption"`
	Rows    []*Row `yaml:"rows"`
	// Columns: task names of the eval suite plus params, avg, ppl, kl.
	Columns []string `yaml:"columns"`
}

// Row is one line of our table.
type Row struct {
	Label string `yaml:"label"`
	From  string `yaml:"from"`  // the stage whose model is evaluated
	Paper string `yaml:"paper"` // the paper row it corresponds to (method column), if any
	Group string `yaml:"group"` // one-shot / post-trained
}

// Kinds are the known stage kinds.
var Kinds = []string{"dense", "database", "oneshot", "shear", "search", "posttrain"}

// modelKinds produce a model (a row may evaluate them).
var modelKinds = map[string]bool{"dense": true, "oneshot": true, "shear": true, "search": true, "posttrain": true}

// Load reads and validates a spec. Unknown keys and wrong types are errors
// with the file's line and column.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	return Parse(path, b)
}

// Parse is Load on bytes; name is used in messages.
func Parse(name string, b []byte) (*Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField())
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %s", name, yaml.FormatError(err, false, true))
	}
	s.path = name
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

// Path is the file the spec was read from.
func (s *Spec) Path() string { return s.path }

func (s *Spec) validate() error {
	if s.Name == "" || strings.ContainsAny(s.Name, "/\\ ") {
		return fmt.Errorf("name: want a non-empty name without slashes or spaces, got %q", s.Name)
	}
	if s.Version < 1 {
		return fmt.Errorf("version: want an integer >= 1, got %d", s.Version)
	}
	if len(s.Profiles) == 0 {
		return fmt.Errorf("profiles: at least one profile is needed")
	}
	for name, p := range s.Profiles {
		if p == nil {
			return fmt.Errorf("profiles.%s: empty", name)
		}
		if err := p.validate(); err != nil {
			return fmt.Errorf("profiles.%s.%w", name, err)
		}
	}
	ids := map[string]*Stage{}
	for i, st := range s.Stages {
		if st == nil || st.ID == "" {
			return fmt.Errorf("stages[%d]: id is required", i)
		}
		if _, dup := ids[st.ID]; dup {
			return fmt.Errorf("stages[%d]: duplicate id %q", i, st.ID)
		}
		if !contains(Kinds, st.Kind) {
			return fmt.Errorf("stages.%s: unknown kind %q (known: %s)", st.ID, st.Kind, strings.Join(Kinds, ", "))
		}
		ids[st.ID] = st
	}
	for _, st := range s.Stages {
		for _, n := range st.Needs {
			if _, ok := ids[n]; !ok {
				return fmt.Errorf("stages.%s: needs %q, which is not a stage of this experiment (stages: %s)", st.ID, n, strings.Join(keys(ids), ", "))
			}
		}
		if err := st.validate(ids); err != nil {
			return fmt.Errorf("stages.%s: %w", st.ID, err)
		}
	}
	if _, err := s.order(); err != nil {
		return err
	}
	if len(s.Table.Rows) == 0 {
		return fmt.Errorf("table.rows: at least one row is needed")
	}
	labels := map[string]bool{}
	for i, r := range s.Table.Rows {
		if r.Label == "" {
			return fmt.Errorf("table.rows[%d]: label is required", i)
		}
		if labels[r.Label] {
			return fmt.Errorf("table.rows[%d]: duplicate label %q", i, r.Label)
		}
		labels[r.Label] = true
		st, ok := ids[r.From]
		if !ok {
			return fmt.Errorf("table.rows[%d] (%s): from %q is not a stage of this experiment", i, r.Label, r.From)
		}
		if !modelKinds[st.Kind] {
			return fmt.Errorf("table.rows[%d] (%s): stage %q of kind %s produces no model", i, r.Label, r.From, st.Kind)
		}
	}
	for _, c := range s.Table.Columns {
		if c == "" {
			return fmt.Errorf("table.columns: empty column name")
		}
	}
	return nil
}

func (p *Profile) validate() error {
	if p.Model == "" {
		return fmt.Errorf("model: required")
	}
	if p.Target <= 0 || p.Target > 1 {
		return fmt.Errorf("target: want a fraction of the dense parameters in (0, 1], got %g", p.Target)
	}
	if p.SeqLen < 2 {
		return fmt.Errorf("seq_len: want >= 2, got %d", p.SeqLen)
	}
	if p.Data.Heldout == "" {
		return fmt.Errorf("data.heldout: required")
	}
	if p.Eval.Limit < 0 || p.Eval.HeldoutWindows < 0 {
		return fmt.Errorf("eval: limit and heldout_windows must be >= 0")
	}
	if p.PostTrain.Tokens < 0 {
		return fmt.Errorf("posttrain.tokens: must be >= 0")
	}
	s := p.Search
	if n := len(s.Survivors); n != len(s.FitnessTokens) || n != len(s.TrainTokens) {
		return fmt.Errorf("search: survivors, fitness_tokens and train_tokens need one entry per selection stage (got %d, %d, %d)", len(s.Survivors), len(s.FitnessTokens), len(s.TrainTokens))
	}
	if s.Fitness != "" && s.Fitness != "kl" && s.Fitness != "ppl" {
		return fmt.Errorf("search.fitness: want kl or ppl, got %q", s.Fitness)
	}
	return nil
}

func (st *Stage) validate(ids map[string]*Stage) error {
	need := func(kind string) error {
		for _, n := range st.Needs {
			if ids[n].Kind == kind {
				return nil
			}
		}
		return fmt.Errorf("kind %s needs a %s stage in needs", st.Kind, kind)
	}
	needModel := func() error {
		n := 0
		for _, x := range st.Needs {
			if modelKinds[ids[x].Kind] {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("kind %s needs exactly one model-producing stage in needs, got %d", st.Kind, n)
		}
		return nil
	}
	if st.Method != "" && st.Kind != "oneshot" {
		return fmt.Errorf("method is only for oneshot stages")
	}
	if st.Search != nil && st.Kind != "search" {
		return fmt.Errorf("search overrides are only for search stages")
	}
	switch st.Kind {
	case "oneshot":
		if st.Method != "uniform" && st.Method != "dp" {
			return fmt.Errorf("method: want uniform or dp, got %q", st.Method)
		}
		return need("database")
	case "search":
		if o := st.Search; o != nil {
			if o.Fitness != nil && *o.Fitness != "kl" && *o.Fitness != "ppl" {
				return fmt.Errorf("search.fitness: want kl or ppl, got %q", *o.Fitness)
			}
			if o.Stages != nil && *o.Stages < 1 {
				return fmt.Errorf("search.stages: want >= 1, got %d", *o.Stages)
			}
		}
		return need("database")
	case "posttrain":
		return needModel()
	}
	return nil
}

// Profile returns the named profile or an error listing the known ones.
func (s *Spec) Profile(name string) (*Profile, error) {
	p, ok := s.Profiles[name]
	if !ok {
		return nil, fmt.Errorf("%s: no profile %q (profiles: %s)", s.path, name, strings.Join(keys(s.Profiles), ", "))
	}
	return p, nil
}

// Stage returns the stage with the given id.
func (s *Spec) Stage(id string) *Stage {
	for _, st := range s.Stages {
		if st.ID == id {
			return st
		}
	}
	return nil
}

// order returns the stages in a topological order (file order among ready
// stages) or an error naming a cycle.
func (s *Spec) order() ([]*Stage, error) {
	done := map[string]bool{}
	var out []*Stage
	for len(out) < len(s.Stages) {
		progress := false
		for _, st := range s.Stages {
			if done[st.ID] {
				continue
			}
			ready := true
			for _, n := range st.Needs {
				ready = ready && done[n]
			}
			if ready {
				done[st.ID] = true
				out = append(out, st)
				progress = true
			}
		}
		if !progress {
			var left []string
			for _, st := range s.Stages {
				if !done[st.ID] {
					left = append(left, st.ID)
				}
			}
			return nil, fmt.Errorf("stages: the needs form a cycle among %s", strings.Join(left, ", "))
		}
	}
	return out, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
