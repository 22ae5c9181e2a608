package evolve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/darwinlm/darwinlm-go/internal/progress"
)

// Stage is one stage of multi-stage selection.
type Stage struct {
	Survivors     int // candidates kept
	FitnessTokens int // tokens of the fitness minibatch (exactly)
	TrainTokens   int // fine-tuning tokens per candidate (whole sequences, at least this many); 0 = no training
}

// Score is what an Evaluator returns for one candidate.
type Score struct {
	Fitness float64 // after fine-tuning on the batch's training sequences; lower is better
	Before  float64 // before fine-tuning (when asked), NaN otherwise
	Params  int64   // parameters of the candidate's model
}

// Evaluator scores candidates. The search calls Evaluate concurrently from
// Options.Workers goroutines, worker in [0, Workers) naming the calling
// goroutine (so an implementation can keep per-worker buffers). Scores must
// depend only on the levels and the batch, never on what was evaluated
// before, or --resume would not reproduce an uninterrupted run.
type Evaluator interface {
	// Evaluate builds the candidate from its levels, fine-tunes it on the
	// training sequences of b (none when b.Train is empty: training-unaware
	// selection), and scores it on the fitness pieces of b. With before set
	// it also scores the untrained candidate first.
	Evaluate(ctx context.Context, worker int, levels []int, b *Batch, before bool) (Score, error)
	// Params is the parameter count of a candidate (no training).
	Params(levels []int) (int64, error)
}

// HeldOut is an optional Evaluator extension: the parent's held-out
// figures, logged every Options.EvalEvery generations.
type HeldOut interface {
	HeldOut(ctx context.Context, levels []int) (ppl, kl, calibPPL float64, err error)
}

// Problem is what the search runs on: the space, the lengths of the
// sequences of the two pools it draws minibatches from, and the evaluator.
type Problem struct {
	Space     *Space
	TrainLens []int // training (fine-tuning) pool
	FitLens   []int // fitness (calibration) pool
	Eval      Evaluator
}

// Options are the search settings.
type Options struct {
	TargetLevel        float64
	Offspring          int // λ
	Stages             []Stage
	Generations        int
	StepSize           int
	InitiallyGenerated int // non-integer target: random configurations drawn
	InitialTokens      int // non-integer target: fitness tokens to pick the best of them
	Seed               int64
	FitnessBefore      bool // also score candidates before fine-tuning
	EvalEvery          int  // held-out evaluation period in generations (0: only at the start and the end)
	Workers            int  // candidates evaluated at once (≥ 1)

	LogDir string // "" = no log
	Resume bool
	// RunID names the run in the logs; "" derives it from the settings.
	RunID string
	// Settings identify the run beside the search options (model, data,
	// database…): --resume refuses a log written with other ones.
	Settings map[string]any
	// Label prefixes progress lines (e.g. the experiment's name).
	Label string
	// AfterGeneration, when set, is called after each generation is logged
	// (tests; progress reporting by callers).
	AfterGeneration func(GenerationRow)
}

// Result is the outcome of a search.
type Result struct {
	RunID     string
	Names     []string // module names, level-configuration order
	Levels    []int    // the final parent
	Candidate int64
	Fitness   float64 // its last-stage fitness (NaN if never scored)
	Params    int64
	// Generations completed in total; Resumed is the number that were
	// already in the log when this call started.
	Generations, Resumed int
}

// validate checks options against the problem, before any compute.
func (o *Options) validate(p *Problem) error {
	if p.Space == nil {
		return fmt.Errorf("evolve: the problem needs a search space")
	}
	if o.Offspring < 1 {
		return fmt.Errorf("--offspring must be at least 1, got %d", o.Offspring)
	}
	if o.Generations < 0 {
		return fmt.Errorf("--generations must not be negative, got %d", o.Generations)
	}
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.EvalEvery < 0 {
		return fmt.Errorf("--eval-every must not be negative, got %d", o.EvalEvery)
	}
	if len(o.Stages) == 0 {
		return fmt.Errorf("at least one selection stage is needed")
	}
	if last := o.Stages[len(o.Stages)-1].Survivors; last != 1 {
		return fmt.Errorf("--survivors: the last stage must keep exactly 1 candidate (the next parent), got %d", last)
	}
	for i, st := range o.Stages {
		if st.Survivors < 1 {
			return fmt.Errorf("--survivors: stage %d keeps %d candidates; each stage must keep at least 1", i+1, st.Survivors)
		}
		if i == 0 && st.Survivors > o.Offspring {
			return fmt.Errorf("--survivors: stage 1 keeps %d candidates but there are only %d offspring (--offspring)", st.Survivors, o.Offspring)
		}
		if i > 0 && st.Survivors > o.Stages[i-1].Survivors {
			return fmt.Errorf("--survivors: stage %d keeps %d candidates, more than the %d of stage %d", i+1, st.Survivors, o.Stages[i-1].Survivors, i)
		}
		if st.FitnessTokens < 1 {
			return fmt.Errorf("--fitness-tokens: stage %d has %d tokens; each stage needs at least 1", i+1, st.FitnessTokens)
		}
		if st.TrainTokens < 0 {
			return fmt.Errorf("--train-tokens: stage %d has %d tokens", i+1, st.TrainTokens)
		}
		if n := sum(p.FitLens); st.FitnessTokens > n {
			return fmt.Errorf("--fitness-tokens: stage %d needs %d tokens but the fitness pool holds %d (raise --calib-tokens)", i+1, st.FitnessTokens, n)
		}
		if n := sum(p.TrainLens); st.TrainTokens > n {
			return fmt.Errorf("--train-tokens: stage %d needs %d tokens but the training pool holds %d (raise --train-pool-tokens)", i+1, st.TrainTokens, n)
		}
	}
	if o.StepSize == 0 {
		o.StepSize = 1
	}
	if err := p.Space.CheckTarget(o.TargetLevel, o.StepSize); err != nil {
		return err
	}
	if o.TargetLevel != math.Trunc(o.TargetLevel) {
		if o.InitiallyGenerated < 1 {
			return fmt.Errorf("--target-level %v is not an integer: --initially-generated must be at least 1", o.TargetLevel)
		}
		if o.InitialTokens < 1 {
			return fmt.Errorf("--target-level %v is not an integer: --initial-tokens must be at least 1", o.TargetLevel)
		}
		if n := sum(p.FitLens); o.InitialTokens > n {
			return fmt.Errorf("--initial-tokens %d exceeds the %d tokens of the fitness pool", o.InitialTokens, n)
		}
	}
	return nil
}

func sum(x []int) int {
	s := 0
	for _, v := range x {
		s += v
	}
	return s
}

// settings is the run's identity as stored in settings.json.
func (o *Options) settings() map[string]any {
	s := map[string]any{}
	for k, v := range o.Settings {
		s[k] = v
	}
	var surv, fit, tr []int
	for _, st := range o.Stages {
		surv = append(surv, st.Survivors)
		fit = append(fit, st.FitnessTokens)
		tr = append(tr, st.TrainTokens)
	}
	s["target-level"] = o.TargetLevel
	s["offspring"] = o.Offspring
	s["survivors"] = surv
	s["fitness-tokens"] = fit
	s["train-tokens"] = tr
	s["generations"] = o.Generations
	s["step-size"] = o.StepSize
	s["seed"] = o.Seed
	s["fitness-before"] = o.FitnessBefore
	s["eval-every"] = o.EvalEvery
	if o.TargetLevel != math.Trunc(o.TargetLevel) {
		s["initially-generated"] = o.InitiallyGenerated
		s["initial-tokens"] = o.InitialTokens
	}
	return s
}

// runID hashes the settings (without --generations, which may grow on
// resume), so an uninterrupted and a resumed run share it.
func runID(s map[string]any) string {
	c := map[string]any{}
	for k, v := range s {
		if k != "generations" {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c) // map keys are sorted
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6])
}

// candidate is a configuration taking part in selection.
type candidate struct {
	id, parent int64
	levels     []int
	switches   int
}

// Search runs the evolutionary search (the reference's
// evo_struct_prune_search.py main loop; see the package documentation).
func Search(ctx context.Context, p Problem, o Options) (*Result, error) {
	s, err := prepare(p, o)
	if err != nil {
		return nil, err
	}
	return s.run(ctx)
}

// prepare validates the options and opens the log (checking a resumed
// run's settings) without any compute. p.Eval may still be nil.
func prepare(p Problem, o Options) (*searcher, error) {
	if err := o.validate(&p); err != nil {
		return nil, err
	}
	settings := o.settings()
	if o.RunID == "" {
		o.RunID = runID(settings)
	}
	settings["run-id"] = o.RunID
	log, err := openLog(o.LogDir, settings, o.Resume, "generations")
	if err != nil {
		return nil, err
	}
	return &searcher{p: p, o: o, log: log}, nil
}

type searcher struct {
	p   Problem
	o   Options
	log *searchLog

	parent     candidate
	parentFit  *float64
	parentBef  *float64
	parentPara int64
	start      time.Time
	genTimes   []float64
}

func (s *searcher) numInitial() int64 {
	if s.o.TargetLevel == math.Trunc(s.o.TargetLevel) {
		return 1
	}
	return int64(s.o.InitiallyGenerated)
}

func (s *searcher) run(ctx context.Context) (*Result, error) {
	if s.p.Eval == nil {
		return nil, fmt.Errorf("evolve: the problem needs an evaluator")
	}
	s.start = time.Now()
	resumed := 0
	if n := len(s.log.gens); n > 0 {
		last := s.log.gens[n-1]
		if err := s.restore(last); err != nil {
			return nil, err
		}
		resumed = int(last.Generation) + 1
	} else if err := s.initialise(ctx); err != nil {
		return nil, err
	}
	for g := resumed; g < s.o.Generations; g++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.generation(ctx, g); err != nil {
			return nil, err
		}
	}
	res := &Result{RunID: s.o.RunID, Names: s.p.Space.Names, Levels: s.parent.levels, Candidate: s.parent.id,
		Fitness: math.NaN(), Params: s.parentPara, Generations: max(s.o.Generations, resumed), Resumed: resumed}
	if s.parentFit != nil {
		res.Fitness = *s.parentFit
	}
	return res, nil
}

// restore takes the parent from the last logged generation.
func (s *searcher) restore(last GenerationRow) error {
	if len(last.Levels) != len(s.p.Space.Names) {
		return fmt.Errorf("--resume: the log's configurations have %d levels, the database %d modules", len(last.Levels), len(s.p.Space.Names))
	}
	lv := make([]int, len(last.Levels))
	for i, v := range last.Levels {
		lv[i] = int(v)
	}
	s.parent = candidate{id: last.Candidate, parent: -1, levels: lv}
	s.parentFit, s.parentBef, s.parentPara = last.Fitness, last.FitnessBeforeTrain, last.Params
	return nil
}

// initialise logs generation −1: the uniform parent of an integer target,
// or the best of --initially-generated random configurations.
func (s *searcher) initialise(ctx context.Context) error {
	t0 := time.Now()
	var rows []CandidateRow
	if s.numInitial() == 1 {
		s.parent = candidate{id: 0, parent: -1, levels: s.p.Space.Initial(int(s.o.TargetLevel))}
	} else {
		r := newStream(s.o.Seed, streamInit, -1, 0)
		var cands []candidate
		for i := range s.o.InitiallyGenerated {
			lv, err := s.p.Space.randomInitial(s.o.TargetLevel, s.o.StepSize, r)
			if err != nil {
				return err
			}
			cands = append(cands, candidate{id: int64(i), parent: -1, levels: lv})
		}
		b := drawBatch(s.p.TrainLens, s.p.FitLens, 0, s.o.InitialTokens, newStream(s.o.Seed, streamStage, -1, 0))
		kept, scores, r2, err := s.stage(ctx, -1, 0, 1, cands, b, "initial population")
		if err != nil {
			return err
		}
		rows = r2
		s.parent = kept[0]
		f := scores[0].Fitness
		s.parentFit = &f
		s.parentBef = optional(scores[0].Before)
	}
	var err error
	if s.parentPara, err = s.p.Eval.Params(s.parent.levels); err != nil {
		return err
	}
	return s.commit(ctx, -1, rows, false, t0)
}

// generation runs one generation: λ offspring, then the stages.
func (s *searcher) generation(ctx context.Context, g int) error {
	t0 := time.Now()
	kids, sw, err := s.p.Space.offspring(s.parent.levels, s.o.Offspring, s.o.StepSize, newStream(s.o.Seed, streamOffspring, g, 0))
	if err != nil {
		return err
	}
	base := s.numInitial() + int64(g)*int64(s.o.Offspring)
	cands := make([]candidate, len(kids))
	for i, k := range kids {
		cands[i] = candidate{id: base + int64(i), parent: s.parent.id, levels: k, switches: sw[i]}
	}
	lastSurv := s.o.Stages[len(s.o.Stages)-1].Survivors
	var rows []CandidateRow
	var scores []Score
	for si, st := range s.o.Stages {
		if st.Survivors == lastSurv && !slices.ContainsFunc(cands, func(c candidate) bool { return slices.Equal(c.levels, s.parent.levels) }) {
			// Elitism, as the reference: the parent joins the stage whose
			// survivor count is the last stage's (before the last stage).
			cands = append(cands, candidate{id: s.parent.id, parent: -1, levels: s.parent.levels})
		}
		b := drawBatch(s.p.TrainLens, s.p.FitLens, st.TrainTokens, st.FitnessTokens, newStream(s.o.Seed, streamStage, g, si))
		var r []CandidateRow
		cands, scores, r, err = s.stage(ctx, g, si, st.Survivors, cands, b, "")
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	changed := cands[0].id != s.parent.id
	s.parent = cands[0]
	s.parent.parent = -1
	f := scores[0].Fitness
	s.parentFit, s.parentBef, s.parentPara = &f, optional(scores[0].Before), scores[0].Params
	return s.commit(ctx, g, rows, changed, t0)
}

func optional(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

func toInt32(l []int) []int32 {
	out := make([]int32, len(l))
	for i, v := range l {
		out[i] = int32(v)
	}
	return out
}

// stage scores every candidate on one batch and keeps the best keep, in
// fitness order. It returns the survivors, their scores and the log rows
// (in candidate order).
func (s *searcher) stage(ctx context.Context, g, si, keep int, cands []candidate, b *Batch, what string) ([]candidate, []Score, []CandidateRow, error) {
	scores := make([]Score, len(cands))
	secs := make([]float64, len(cands))
	errs := make([]error, len(cands))
	desc := what
	if desc == "" {
		desc = fmt.Sprintf("generation %d/%d stage %d/%d", g+1, s.o.Generations, si+1, len(s.o.Stages))
	}
	if s.o.Label != "" {
		desc = s.o.Label + ": " + desc
	}
	bar := progress.New(int64(len(cands)), desc+s.status())
	best := math.Inf(1)
	var mu sync.Mutex
	next := 0
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range min(s.o.Workers, len(cands)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(cands) || cctx.Err() != nil {
					return
				}
				t0 := time.Now()
				sc, err := s.p.Eval.Evaluate(cctx, w, cands[i].levels, b, s.o.FitnessBefore)
				secs[i] = time.Since(t0).Seconds()
				if err != nil {
					errs[i] = fmt.Errorf("generation %d, stage %d, candidate %d: %w", g, si, cands[i].id, err)
					cancel()
					return
				}
				if !s.o.FitnessBefore {
					sc.Before = math.NaN()
				}
				mu.Lock()
				scores[i] = sc
				if sc.Fitness < best {
					best = sc.Fitness
					bar.Describe(fmt.Sprintf("%s · stage best %.4g%s", desc, best, s.status()))
				}
				bar.Add(1)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	bar.Finish()
	for _, e := range errs {
		if e != nil {
			return nil, nil, nil, e
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	fit := make([]float64, len(cands))
	for i, sc := range scores {
		fit[i] = sc.Fitness
	}
	order := rank(fit)[:min(keep, len(cands))]
	survived := make([]bool, len(cands))
	for _, i := range order {
		survived[i] = true
	}
	rows := make([]CandidateRow, len(cands))
	for i, c := range cands {
		rows[i] = CandidateRow{RunID: s.o.RunID, Generation: int64(g), Stage: int64(si), Candidate: c.id, Parent: c.parent,
			Levels: toInt32(c.levels), Switches: int64(c.switches), TrainTokens: int64(b.TrainTokens), FitnessTokens: int64(b.FitTokens),
			Params: scores[i].Params, Fitness: scores[i].Fitness, FitnessBeforeTrain: optional(scores[i].Before),
			Survived: survived[i], Seconds: secs[i], Seed: s.o.Seed}
	}
	kept := make([]candidate, len(order))
	ks := make([]Score, len(order))
	for j, i := range order {
		kept[j], ks[j] = cands[i], scores[i]
	}
	return kept, ks, rows, nil
}

// status is the progress suffix: best fitness so far and the ETA.
func (s *searcher) status() string {
	out := ""
	if s.parentFit != nil {
		out += fmt.Sprintf(" · parent fitness %.4g", *s.parentFit)
	}
	if n := len(s.genTimes); n > 0 {
		left := s.o.Generations - int(s.log.gens[len(s.log.gens)-1].Generation) - 1
		if left > 0 {
			mean := 0.0
			for _, t := range s.genTimes {
				mean += t
			}
			mean /= float64(n)
			out += " · ETA " + (time.Duration(mean*float64(left)) * time.Second).Round(time.Second).String()
		}
	}
	return out
}

// commit evaluates the parent on held-out data when due and logs the
// generation.
func (s *searcher) commit(ctx context.Context, g int, rows []CandidateRow, changed bool, t0 time.Time) error {
	row := GenerationRow{RunID: s.o.RunID, Generation: int64(g), Candidate: s.parent.id, Levels: toInt32(s.parent.levels),
		Params: s.parentPara, Fitness: s.parentFit, FitnessBeforeTrain: s.parentBef, Changed: changed, Seed: s.o.Seed}
	due := g == -1 || g == s.o.Generations-1 || (s.o.EvalEvery > 0 && (g+1)%s.o.EvalEvery == 0)
	if ho, ok := s.p.Eval.(HeldOut); ok && due {
		ppl, kl, cppl, err := ho.HeldOut(ctx, s.parent.levels)
		if err != nil {
			return fmt.Errorf("held-out evaluation after generation %d: %w", g, err)
		}
		row.EvalPPL, row.EvalKL, row.CalibPPL = optional(ppl), optional(kl), optional(cppl)
	}
	row.Seconds = time.Since(t0).Seconds()
	if g >= 0 {
		s.genTimes = append(s.genTimes, row.Seconds)
	}
	if err := s.log.commit(rows, row); err != nil {
		return err
	}
	if s.o.AfterGeneration != nil {
		s.o.AfterGeneration(row)
	}
	return nil
}
