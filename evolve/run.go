package evolve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

// Config is a whole search as `darwinlm search` runs it: model, database,
// data pools, search settings, log and output. Budgets are in tokens; the
// comments give the released reference script's values
// (scripts/struct_prune_search.sh).
type Config struct {
	Model     string // model spec: hf:ORG/NAME[/SUBDIR], a Hugging Face folder or a llama2.c .bin
	Tokenizer string // tokenizer file ("" = beside the model)
	Backend   string // compute backend ("" or "auto" = default)
	Database  string // pruning database folder (prune.Build)

	// Pools. Each is sampled once from its source's documents with
	// Sampler: the fitness (calibration) and training pools from the first
	// half of the documents, the held-out pool from the second half (the
	// reference's train=True / train=False halves), with the reference's
	// seeds (fitness 0, training 123, held-out 0).
	Calib           string // fitness-pool source (data SPEC); required
	TrainData       string // training-pool source ("" = Calib)
	EvalData        string // held-out-pool source ("" = Calib)
	Sampler         string // "random" (the reference's sampler) or "first"
	SeqLen          int    // pool sequence length (0 = min(context, 8192); the reference: 8196)
	CalibTokens     int    // fitness pool (paper 100,000)
	TrainPoolTokens int    // training pool (paper 500,000)
	EvalTokens      int    // held-out pool (paper 100,000); 0 = no held-out evaluation

	// Search (see Options).
	TargetLevel        float64 // paper 5
	Offspring          int     // λ, paper 16
	Survivors          []int   // per stage, paper 8,4,2,1
	FitnessTokens      []int   // per stage, paper 1024,2048,4096,8192
	TrainTokens        []int   // per stage, paper 10000,50000,100000,200000; all 0 = training-unaware (EvoPress) selection
	Generations        int     // paper 200
	StepSize           int     // paper 1
	InitiallyGenerated int     // non-integer target only
	InitialTokens      int     // non-integer target only
	Fitness            string  // kl (paper), sparse_kl or ppl
	KLTopK             int     // k of sparse_kl (paper 10)
	LR                 float64 // fine-tuning learning rate in selection (paper 1e-5; the rest of train.SelectionPreset is fixed)
	Seed               int64   // paper 0
	FitnessBefore      bool    // also log the fitness before fine-tuning
	EvalEvery          int     // held-out evaluation period (paper 20)
	Workers            int     // candidates evaluated at once (CPU cores split between them)

	Log         string // log folder ("" = none)
	Out         string // final level configuration ("" = none)
	Resume      bool
	RunID       string // "" = derived from the settings
	CacheMemory int64  // largest dense-logit cache kept on the heap (0 = DefaultCacheMemory); larger ones are mapped from a file in Log
	Label       string // progress prefix
	// AfterGeneration is passed to Options (tests, callers' progress).
	AfterGeneration func(GenerationRow)
}

// DefaultConfig has the released reference settings (token budgets at
// paper scale; shrink them for small models, keeping their ratios).
func DefaultConfig() Config {
	return Config{Backend: "auto", Sampler: "random", CalibTokens: 100000, TrainPoolTokens: 500000, EvalTokens: 100000,
		TargetLevel: 5, Offspring: 16, Survivors: []int{8, 4, 2, 1}, FitnessTokens: []int{1024, 2048, 4096, 8192},
		TrainTokens: []int{10000, 50000, 100000, 200000}, Generations: 200, StepSize: 1, Fitness: FitnessKL, KLTopK: 10,
		LR: 1e-5, EvalEvery: 20, Workers: 1}
}

// Pool seeds of the reference (src/data_utils.py get_fineweb_edu calls).
const (
	fitnessPoolSeed = 0
	trainPoolSeed   = 123
	evalPoolSeed    = 0
)

// Validate checks the settings that need no file (flag errors).
func (c *Config) Validate() error {
	if c.Model == "" {
		return fmt.Errorf("--model is required")
	}
	if c.Database == "" {
		return fmt.Errorf("--database is required")
	}
	if c.Calib == "" {
		return fmt.Errorf("--calib is required (the fitness-pool text)")
	}
	if len(c.Survivors) != len(c.FitnessTokens) || len(c.Survivors) != len(c.TrainTokens) {
		return fmt.Errorf("stage lists of different lengths: --survivors has %d stages, --fitness-tokens %d, --train-tokens %d",
			len(c.Survivors), len(c.FitnessTokens), len(c.TrainTokens))
	}
	if err := CheckFitness(c.Fitness); err != nil {
		return err
	}
	if c.Fitness == FitnessSparseKL && c.KLTopK < 1 {
		return fmt.Errorf("--kl-topk must be at least 1, got %d", c.KLTopK)
	}
	if c.Sampler != "random" && c.Sampler != "first" {
		return fmt.Errorf("--sampler %q: want random or first", c.Sampler)
	}
	if c.SeqLen < 0 || c.CalibTokens < 1 || c.TrainPoolTokens < 0 || c.EvalTokens < 0 {
		return fmt.Errorf("pool sizes: --seq-len %d, --calib-tokens %d, --train-pool-tokens %d, --eval-tokens %d must not be negative (and --calib-tokens positive)",
			c.SeqLen, c.CalibTokens, c.TrainPoolTokens, c.EvalTokens)
	}
	training := false
	for _, t := range c.TrainTokens {
		training = training || t > 0
	}
	if training && c.TrainPoolTokens < 1 {
		return fmt.Errorf("--train-tokens asks for fine-tuning but --train-pool-tokens is 0")
	}
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		return fmt.Errorf("--lr must be positive, got %g", c.LR)
	}
	if c.Out != "" {
		if st, err := os.Stat(c.Out); err == nil && st.IsDir() {
			return fmt.Errorf("--out %s is a folder; give the level-configuration file to write", c.Out)
		}
		if st, err := os.Stat(filepath.Dir(c.Out)); err != nil || !st.IsDir() {
			return fmt.Errorf("--out %s: folder %s does not exist", c.Out, filepath.Dir(c.Out))
		}
	}
	if c.Log != "" {
		if st, err := os.Stat(c.Log); err == nil && !st.IsDir() {
			return fmt.Errorf("--log %s is a file; give a folder", c.Log)
		}
	}
	return nil
}

// dbStitcher stitches candidates from a pruning database.
type dbStitcher struct {
	db    *prune.Database
	dense *model.Model
	names []string
}

func (s dbStitcher) Stitch(lv []int) (*model.Model, error) {
	return s.db.Stitch(s.dense, prune.LevelConfig{Names: s.names, Levels: lv})
}

func (s dbStitcher) Params(lv []int) (int64, error) {
	return s.db.Params(prune.LevelConfig{Names: s.names, Levels: lv})
}

// DatabaseStitcher returns the Stitcher of a database and its dense model.
func DatabaseStitcher(db *prune.Database, dense *model.Model) Stitcher {
	return dbStitcher{db: db, dense: dense, names: db.Template().Names}
}

// DatabaseSpace is the search space of a database.
func DatabaseSpace(db *prune.Database) (*Space, error) {
	return NewSpace(db.Template().Names, db.HasLevel)
}

// halves returns the first or second half of docs (integer division), as
// the reference's train flag does.
func half(docs []string, second bool) []string {
	if second {
		return docs[len(docs)/2:]
	}
	return docs[:len(docs)/2]
}

// Run loads the model and the database, samples the pools, caches the
// dense logits and runs the search; the final configuration is written to
// c.Out. Every input is checked before compute.
func Run(ctx context.Context, c Config) (*Result, error) {
	if c.Workers < 1 {
		c.Workers = 1
	}
	if c.CacheMemory <= 0 {
		c.CacheMemory = DefaultCacheMemory
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	be, err := backend.Get(c.Backend)
	if err != nil {
		return nil, fmt.Errorf("--backend: %w", err)
	}
	db, err := prune.OpenDatabase(c.Database)
	if err != nil {
		return nil, fmt.Errorf("--database: %w", err)
	}
	dense, tok, err := model.Open(c.Model, c.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	if err := db.CheckModel(dense); err != nil {
		return nil, fmt.Errorf("--database: %w", err)
	}
	space, err := DatabaseSpace(db)
	if err != nil {
		return nil, err
	}
	stages := make([]Stage, len(c.Survivors))
	for i := range stages {
		stages[i] = Stage{Survivors: c.Survivors[i], FitnessTokens: c.FitnessTokens[i], TrainTokens: c.TrainTokens[i]}
	}
	o := Options{TargetLevel: c.TargetLevel, Offspring: c.Offspring, Stages: stages, Generations: c.Generations,
		StepSize: c.StepSize, InitiallyGenerated: c.InitiallyGenerated, InitialTokens: c.InitialTokens, Seed: c.Seed,
		FitnessBefore: c.FitnessBefore, EvalEvery: c.EvalEvery, Workers: c.Workers, LogDir: c.Log, Resume: c.Resume,
		RunID: c.RunID, Label: c.Label, AfterGeneration: c.AfterGeneration}
	// The space-only checks first: they need no data.
	if o.StepSize == 0 {
		o.StepSize = 1
	}
	if err := space.CheckTarget(c.TargetLevel, o.StepSize); err != nil {
		return nil, err
	}

	seqLen := c.SeqLen
	if seqLen == 0 {
		seqLen = 8192
		if dense.Cfg.MaxSeq > 0 {
			seqLen = min(seqLen, dense.Cfg.MaxSeq)
		}
	}
	if dense.Cfg.MaxSeq > 0 && seqLen > dense.Cfg.MaxSeq {
		return nil, fmt.Errorf("--seq-len %d exceeds the model's context of %d", seqLen, dense.Cfg.MaxSeq)
	}
	pool := func(flag, spec string, second bool, n int, seed int64) ([][]int, error) {
		if n == 0 {
			return nil, nil
		}
		docs, err := data.ReadTexts(spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		seqs, err := prune.SampleSequences(half(docs, second), tok, n, seqLen, c.Sampler, seed)
		if err != nil {
			return nil, fmt.Errorf("%s %s (%s half of %d documents): %w", flag, spec, map[bool]string{false: "first", true: "second"}[second], len(docs), err)
		}
		return seqs, nil
	}
	or := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	fitPool, err := pool("--calib", c.Calib, false, c.CalibTokens, fitnessPoolSeed)
	if err != nil {
		return nil, err
	}
	maxTrain := 0
	for _, t := range c.TrainTokens {
		maxTrain = max(maxTrain, t)
	}
	var trainPool [][]int
	if maxTrain > 0 {
		tp, err := pool("--train-data", or(c.TrainData, c.Calib), false, c.TrainPoolTokens, trainPoolSeed)
		if err != nil {
			return nil, err
		}
		// A one-token sequence has no next-token target (the reference's
		// loss would be NaN); it is left out of the training pool.
		for _, s := range tp {
			if len(s) >= 2 {
				trainPool = append(trainPool, s)
			}
		}
	}
	evalPool, err := pool("--eval-data", or(c.EvalData, c.Calib), true, c.EvalTokens, evalPoolSeed)
	if err != nil {
		return nil, err
	}
	manifest, err := os.ReadFile(filepath.Join(c.Database, prune.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("--database: %w", err)
	}
	mh := sha256.Sum256(manifest)
	o.Settings = map[string]any{
		"model": c.Model, "tokenizer": c.Tokenizer, "database": c.Database, "database-manifest-sha256": hex.EncodeToString(mh[:]),
		"model-hash": db.Man.ModelHash, "calib": c.Calib, "train-data": or(c.TrainData, c.Calib), "eval-data": or(c.EvalData, c.Calib),
		"sampler": c.Sampler, "seq-len": seqLen, "calib-tokens": c.CalibTokens, "train-pool-tokens": c.TrainPoolTokens,
		"eval-tokens": c.EvalTokens, "fitness": c.Fitness, "lr": c.LR,
	}
	if c.Fitness == FitnessSparseKL {
		o.Settings["kl-topk"] = c.KLTopK
	}
	lens := func(p [][]int) []int {
		l := make([]int, len(p))
		for i, s := range p {
			l[i] = len(s)
		}
		return l
	}
	prob := Problem{Space: space, TrainLens: lens(trainPool), FitLens: lens(fitPool)}
	s, err := prepare(prob, o)
	if err != nil {
		return nil, err
	}

	// Compute starts here.
	var cache *DenseCache
	if c.Fitness != FitnessPPL {
		k := 0
		if c.Fitness == FitnessSparseKL {
			k = c.KLTopK
		}
		t0 := time.Now()
		if cache, err = NewDenseCache(be, dense, fitPool, k, c.Log, c.CacheMemory); err != nil {
			return nil, err
		}
		defer cache.Close()
		if !progress.Quiet {
			fmt.Fprintf(os.Stderr, "dense logits of %d fitness sequences cached in %.1fs\n", len(fitPool), time.Since(t0).Seconds())
		}
	}
	opts := train.SelectionPreset()
	opts.LR = c.LR
	ev, err := NewModelEvaluator(be, c.Workers, dense, DatabaseStitcher(db, dense), opts, c.Fitness, cache, fitPool, trainPool, evalPool)
	if err != nil {
		return nil, err
	}
	s.p.Eval = ev
	res, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	if c.Out != "" {
		if err := (prune.LevelConfig{Names: res.Names, Levels: res.Levels}).Write(c.Out); err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
	}
	return res, nil
}
