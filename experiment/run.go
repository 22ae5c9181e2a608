package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// StageVersion is part of every stage hash: bump it when a stage's code
// changes what it computes, so caches of the old code are not reused.
const StageVersion = 1

// Options configure Run.
type Options struct {
	Profile string
	Backend backend.Backend
	// BackendName is the name Backend was got by (backend.Get), for stages
	// that open their own (the search); "" = "auto".
	BackendName string
	Results     string // the results folder (default "results")
	Commit      string // recorded in the Parquet metadata
	Machine     string // recorded in the Parquet metadata
	Now         func() time.Time
	Log         io.Writer // stage lines (stderr)
}

// ErrNotAvailable marks a stage whose implementation is not in this build
// (its package has not landed yet). The stage and every stage and row that
// depends on it are recorded as "not run" with the reason.
type ErrNotAvailable struct{ Reason string }

func (e *ErrNotAvailable) Error() string { return "not available: " + e.Reason }

// Meta is written as stage.json into a finished stage's cache folder; its
// presence marks the stage as done.
type Meta struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Hash     string          `json:"hash"`
	Status   string          `json:"status"` // done, not_run or failed
	Reason   string          `json:"reason,omitempty"`
	Seconds  float64         `json:"seconds"`
	Params   int64           `json:"params,omitempty"` // parameters of the stage's model
	Inputs   []string        `json:"inputs,omitempty"` // hashes of the needed stages
	Settings json.RawMessage `json:"settings"`
	Cached   bool            `json:"-"`
}

// Output is a stage's result as later stages see it.
type Output struct {
	Stage *Stage
	Dir   string // cache folder ("" for not-run stages)
	Meta  Meta
	// ModelSpec is what model.Open loads for model-producing stages.
	ModelSpec string
}

// Env is what a stage implementation gets.
type Env struct {
	Ctx      context.Context
	Spec     *Spec
	Profile  *Profile
	Stage    *Stage
	Be       backend.Backend
	BeName   string             // the name backend.Get gives Be by
	Dir      string             // write outputs here (a temp folder renamed when the stage succeeds)
	Inputs   map[string]*Output // by stage id
	Dense    *model.Model       // the dense model (shared, read-only)
	Tok      tokenizer.Tokenizer
	TokSrc   string // tokenizer files to copy beside saved models
	Settings any    // the resolved settings (what the hash covers)
	Log      func(format string, a ...any)
}

// Input returns the single needed stage of the given kind ("" = any model).
func (e *Env) Input(kind string) *Output {
	for _, id := range e.Stage.Needs {
		o := e.Inputs[id]
		if kind == "" && modelKinds[o.Stage.Kind] || o.Stage.Kind == kind {
			return o
		}
	}
	return nil
}

// LoadInputModel opens the model of a needed stage (a fresh copy the caller owns).
func (e *Env) LoadInputModel(o *Output) (*model.Model, error) {
	m, _, err := model.Open(o.ModelSpec, e.Spec.tokenizerFor(e.Profile, o))
	return m, err
}

// SaveModel writes m as the stage's model (Dir/model).
func (e *Env) SaveModel(m *model.Model) error {
	return model.SaveHF(m, filepath.Join(e.Dir, "model"), e.TokSrc)
}

func (s *Spec) tokenizerFor(p *Profile, o *Output) string {
	if o.Stage.Kind == "dense" {
		return p.Tokenizer
	}
	return "" // saved models carry their tokenizer
}

// StageFunc computes one stage kind.
type StageFunc func(e *Env) error

// stageFuncs maps kinds to implementations; kinds whose package has not
// landed return ErrNotAvailable (see stages_*.go).
var stageFuncs = map[string]StageFunc{}

// Plan is the resolved DAG of one profile: the spec's stages plus one eval
// stage per row, in execution order, with their hashes.
type Plan struct {
	Spec    *Spec
	Profile *Profile
	Name    string // profile name
	Nodes   []*Node
	byID    map[string]*Node
}

// Node is a stage with its resolved settings and hash.
type Node struct {
	Stage    *Stage
	Settings any
	Hash     string
	Inputs   []*Node
}

// NewPlan resolves the stages of a profile. It does no compute.
func NewPlan(s *Spec, profile string) (*Plan, error) {
	p, err := s.Profile(profile)
	if err != nil {
		return nil, err
	}
	order, err := s.order()
	if err != nil {
		return nil, err
	}
	pl := &Plan{Spec: s, Profile: p, Name: profile, byID: map[string]*Node{}}
	add := func(st *Stage) error {
		n := &Node{Stage: st}
		for _, id := range st.Needs {
			n.Inputs = append(n.Inputs, pl.byID[id])
		}
		set, err := settingsFor(s, p, st)
		if err != nil {
			return fmt.Errorf("%s: stages.%s: %w", s.path, st.ID, err)
		}
		n.Settings = set
		in := make([]string, len(n.Inputs))
		for i, x := range n.Inputs {
			in[i] = x.Hash
		}
		b, err := json.Marshal(map[string]any{"kind": st.Kind, "settings": set, "inputs": in,
			"experiment_version": s.Version, "stage_version": StageVersion})
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		n.Hash = hex.EncodeToString(h[:8])
		pl.Nodes = append(pl.Nodes, n)
		pl.byID[st.ID] = n
		return nil
	}
	for _, st := range order {
		if err := add(st); err != nil {
			return nil, err
		}
	}
	for _, r := range s.Table.Rows {
		id := EvalID(r.From)
		if pl.byID[id] != nil {
			continue
		}
		if err := add(&Stage{ID: id, Kind: "eval", Needs: []string{r.From}}); err != nil {
			return nil, err
		}
	}
	return pl, nil
}

// EvalID is the id of the implicit eval stage of a model stage.
func EvalID(from string) string { return "eval:" + from }

// Node returns the node with the given stage id.
func (pl *Plan) Node(id string) *Node { return pl.byID[id] }

// settingsFor resolves what a stage computes from: the profile's model,
// data and the budgets of its kind (with the stage's overrides).
func settingsFor(s *Spec, p *Profile, st *Stage) (any, error) {
	base := map[string]any{"model": p.Model, "tokenizer": p.Tokenizer, "seq_len": p.SeqLen, "seed": p.Seed}
	switch st.Kind {
	case "dense":
	case "database":
		base["calib"] = p.Data.Calib
		base["database"] = p.Database
	case "oneshot":
		base["method"] = st.Method
		base["target"] = p.Target
	case "shear":
		base["target"] = p.Target
		base["calib"] = p.Data.Calib
		base["shear"] = p.Shear
	case "search":
		sp, err := resolveSearch(p.Search, st.Search)
		if err != nil {
			return nil, err
		}
		base["target"] = p.Target
		base["calib"] = p.Data.Calib
		base["search"] = sp
	case "posttrain":
		base["train"] = p.Data.Train
		base["posttrain"] = p.PostTrain
	case "eval":
		base["heldout"] = p.Data.Heldout
		base["eval"] = p.Eval
	default:
		return nil, fmt.Errorf("unknown kind %q", st.Kind)
	}
	return base, nil
}

// resolveSearch applies a stage's overrides to the profile's search settings.
func resolveSearch(sp SearchParams, o *SearchOverride) (SearchParams, error) {
	sp.Survivors = append([]int(nil), sp.Survivors...)
	sp.FitnessTokens = append([]int(nil), sp.FitnessTokens...)
	sp.TrainTokens = append([]int(nil), sp.TrainTokens...)
	if o == nil {
		return sp, nil
	}
	if o.Stages != nil {
		n := *o.Stages
		if n > len(sp.Survivors) {
			return sp, fmt.Errorf("search.stages %d exceeds the profile's %d selection stages", n, len(sp.Survivors))
		}
		// Keep the last n stages: the final stage still selects one survivor
		// with the largest fitness budget.
		k := len(sp.Survivors) - n
		sp.Survivors, sp.FitnessTokens, sp.TrainTokens = sp.Survivors[k:], sp.FitnessTokens[k:], sp.TrainTokens[k:]
	}
	if o.TrainingAware != nil && !*o.TrainingAware {
		for i := range sp.TrainTokens {
			sp.TrainTokens[i] = 0
		}
	}
	if o.Fitness != nil {
		sp.Fitness = *o.Fitness
	}
	return sp, nil
}

// ResultsDir is results/<experiment>/<profile>.
func ResultsDir(root string, s *Spec, profile string) string {
	return filepath.Join(root, s.Name, profile)
}

// Outcome is what Run returns.
type Outcome struct {
	Plan    *Plan
	Outputs map[string]*Output
	Dir     string // results folder
	Seconds float64
}

// Run executes the plan: cached stages are reused, missing ones computed in
// DAG order, then the results Parquet files are written. Every check on the
// inputs (profile, results folder version, model, data) happens first.
func Run(ctx context.Context, s *Spec, o Options) (*Outcome, error) {
	if o.Results == "" {
		o.Results = "results"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.BackendName == "" {
		o.BackendName = "auto"
	}
	start := o.Now()
	pl, err := NewPlan(s, o.Profile)
	if err != nil {
		return nil, err
	}
	p := pl.Profile
	if p.Runnable != nil && !*p.Runnable {
		return nil, fmt.Errorf("%s: profile %q is not runnable on this machine (%s)", s.path, o.Profile, strings.TrimSpace(p.Description))
	}
	dir := ResultsDir(o.Results, s, o.Profile)
	if err := CheckResultsVersion(dir, s); err != nil {
		return nil, err
	}
	if o.Backend == nil {
		return nil, fmt.Errorf("experiment: no backend")
	}
	dense, tok, err := model.Open(p.Model, p.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("%s: profiles.%s.model: %w", s.path, o.Profile, err)
	}
	tokSrc, err := tokenizerSource(p)
	if err != nil {
		return nil, err
	}
	if err := checkData(s, o.Profile, p); err != nil {
		return nil, err
	}
	cache := filepath.Join(o.Results, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	outs := map[string]*Output{}
	var failed []string
	spent := map[string][]float64{} // seconds of the stages computed in this run, by kind
	for i, n := range pl.Nodes {
		st := n.Stage
		pos := fmt.Sprintf("[%d/%d] %s %s", i+1, len(pl.Nodes), st.Kind, st.ID)
		out := &Output{Stage: st}
		outs[st.ID] = out
		in := map[string]*Output{}
		var blocked []string
		for _, x := range n.Inputs {
			in[x.Stage.ID] = outs[x.Stage.ID]
			if outs[x.Stage.ID].Meta.Status != "done" {
				blocked = append(blocked, x.Stage.ID)
			}
		}
		set, _ := json.Marshal(n.Settings)
		out.Meta = Meta{ID: st.ID, Kind: st.Kind, Hash: n.Hash, Settings: set}
		for _, x := range n.Inputs {
			out.Meta.Inputs = append(out.Meta.Inputs, x.Hash)
		}
		if len(blocked) > 0 {
			out.Meta.Status = "not_run"
			out.Meta.Reason = rootReason(outs, blocked[0])
			fmt.Fprintf(o.Log, "%s: not run (%s)\n", pos, out.Meta.Reason)
			continue
		}
		sdir := filepath.Join(cache, st.Kind+"-"+n.Hash)
		if m, err := readMeta(sdir); err == nil && m.Status == "done" && m.Hash == n.Hash {
			out.Dir, out.Meta = sdir, *m
			out.Meta.Cached = true
			out.ModelSpec = modelSpec(p, out)
			fmt.Fprintf(o.Log, "%s: cached (%s)\n", pos, sdir)
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "%s: running\n", pos)
		tmp := sdir + ".partial"
		if !resumable[st.Kind] {
			_ = os.RemoveAll(tmp) // an interrupted attempt restarts the stage
		}
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return nil, err
		}
		f := stageFuncs[st.Kind]
		env := &Env{Ctx: ctx, Spec: s, Profile: p, Stage: st, Be: o.Backend, BeName: o.BackendName, Dir: tmp, Inputs: in,
			Dense: dense, Tok: tok, TokSrc: tokSrc, Settings: n.Settings,
			Log: func(format string, a ...any) { fmt.Fprintf(o.Log, "  "+st.ID+": "+format+"\n", a...) }}
		t0 := time.Now()
		var err error
		if f == nil {
			err = &ErrNotAvailable{Reason: "no implementation of kind " + st.Kind}
		} else {
			err = f(env)
		}
		var na *ErrNotAvailable
		if errors.As(err, &na) {
			_ = os.RemoveAll(tmp)
			out.Meta.Status, out.Meta.Reason = "not_run", na.Reason
			fmt.Fprintf(o.Log, "%s: not run (%s)\n", pos, na.Reason)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("stage %s (%s): %w", st.ID, st.Kind, err)
			}
			// Recorded, not fatal: the other rows still run, the table shows
			// the failure, and Run returns an error at the end.
			_ = os.RemoveAll(tmp)
			out.Meta.Status, out.Meta.Reason = "failed", fmt.Sprintf("%s failed: %v", st.ID, err)
			failed = append(failed, st.ID)
			fmt.Fprintf(o.Log, "%s: FAILED: %v\n", pos, err)
			continue
		}
		out.Meta.Status = "done"
		out.Meta.Seconds = time.Since(t0).Seconds()
		out.Dir = sdir
		out.ModelSpec = modelSpec(p, out)
		if modelKinds[st.Kind] {
			if st.Kind == "dense" {
				out.Meta.Params = dense.NumParams()
			} else if m, _, err := model.Open(filepath.Join(tmp, "model"), ""); err != nil {
				return nil, fmt.Errorf("stage %s: its saved model: %w", st.ID, err)
			} else {
				out.Meta.Params = m.NumParams()
			}
		}
		if err := writeMeta(tmp, &out.Meta); err != nil {
			return nil, err
		}
		_ = os.RemoveAll(sdir)
		if err := os.Rename(tmp, sdir); err != nil {
			return nil, err
		}
		spent[st.Kind] = append(spent[st.Kind], out.Meta.Seconds)
		fmt.Fprintf(o.Log, "%s: done in %.1f s (elapsed %s, ETA %s)\n", pos, out.Meta.Seconds,
			time.Since(start).Round(time.Second), eta(spent, pl.Nodes[i+1:]).Round(time.Second))
	}
	res := &Outcome{Plan: pl, Outputs: outs, Dir: dir, Seconds: time.Since(start).Seconds()}
	if err := writeResults(res, o, start); err != nil {
		return nil, err
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%d stage(s) failed: %s (see the table's notes)", len(failed), strings.Join(failed, ", "))
	}
	return res, nil
}

// modelSpec is what model.Open loads for a model-producing stage.
func modelSpec(p *Profile, o *Output) string {
	if !modelKinds[o.Stage.Kind] {
		return ""
	}
	if o.Stage.Kind == "dense" {
		return p.Model
	}
	return filepath.Join(o.Dir, "model")
}

// tokenizerSource is what SaveHF copies as the tokenizer of saved models.
func tokenizerSource(p *Profile) (string, error) {
	if p.Tokenizer != "" {
		return p.Tokenizer, nil
	}
	path := p.Model
	if strings.HasPrefix(path, hub.ModelPrefix) {
		r, err := hub.ResolveModel(path)
		if err != nil {
			return "", err
		}
		path = r
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return path, nil
	}
	return filepath.Dir(path), nil // llama2.c: tok<vocab>.bin beside the checkpoint
}

func readMeta(dir string) (*Meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "stage.json"))
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func writeMeta(dir string, m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, "stage.json"), append(b, '\n'))
}

// rootReason names the first stage up the chain that could not run and why.
func rootReason(outs map[string]*Output, id string) string {
	r := outs[id].Meta.Reason
	if strings.HasPrefix(r, "needs ") || outs[id].Meta.Status == "failed" {
		return r
	}
	return "needs " + id + ", not run: " + r
}

// eta estimates the time of the stages left: each at the mean time of the
// stages of its kind computed so far (the mean of all kinds when none was),
// an upper bound when some of them are cached.
func eta(spent map[string][]float64, left []*Node) time.Duration {
	var all []float64
	for _, v := range spent {
		all = append(all, v...)
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(max(len(v), 1))
	}
	var t float64
	for _, n := range left {
		if v := spent[n.Stage.Kind]; len(v) > 0 {
			t += mean(v)
		} else {
			t += mean(all)
		}
	}
	return time.Duration(t * float64(time.Second))
}
