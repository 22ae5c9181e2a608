package experiment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/prune"
)

func init() { stageFuncs["search"] = runSearch }

// resumable kinds keep their partial folder when a run is interrupted:
// the search resumes from its log (evolve's --resume reproduces the
// uninterrupted run exactly).
var resumable = map[string]bool{"search": true}

// afterGeneration is a test hook (interrupting a search mid-way).
var afterGeneration func(evolve.GenerationRow)

// runSearch is DarwinLM's evolutionary search from the uniform
// configuration at the target level, then the searched model stitched
// from the database.
func runSearch(e *Env) error {
	p := e.Profile
	db, err := openDatabase(e)
	if err != nil {
		return err
	}
	level, _, _, err := UniformTarget(db, p.Target)
	if err != nil {
		return err
	}
	sp, err := resolveSearch(p.Search, e.Stage.Search)
	if err != nil {
		return err
	}
	logDir := filepath.Join(e.Dir, "search")
	_, statErr := os.Stat(filepath.Join(logDir, evolve.GenerationsFile))
	resume := statErr == nil
	if resume {
		e.Log("resuming the search from %s", logDir)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	c := evolve.DefaultConfig()
	c.Model, c.Tokenizer, c.Backend = p.Model, p.Tokenizer, e.BeName
	c.Database = DatabaseDir(e.Input("database"))
	c.Calib, c.EvalData, c.Sampler, c.SeqLen = p.Data.Calib, p.Data.Heldout, sp.Sampler, p.SeqLen
	c.CalibTokens, c.TrainPoolTokens, c.EvalTokens = sp.FitnessPool, sp.TrainPool, sp.EvalPool
	c.TargetLevel = float64(level)
	c.Offspring, c.Survivors, c.FitnessTokens, c.TrainTokens = sp.Offspring, sp.Survivors, sp.FitnessTokens, sp.TrainTokens
	c.Generations, c.Fitness, c.LR, c.Seed, c.EvalEvery = sp.Generations, sp.Fitness, sp.LR, p.Seed, sp.EvalEvery
	c.Log, c.Resume, c.Label = logDir, resume, e.Stage.ID
	c.AfterGeneration = afterGeneration
	if c.Sampler == "" {
		c.Sampler = "first"
	}
	training := false
	for _, t := range c.TrainTokens {
		training = training || t > 0
	}
	if !training {
		c.TrainPoolTokens = 0
	}
	e.Log("target level %d, %d generations x %d offspring, stages %v, fitness %s", level, c.Generations, c.Offspring, c.Survivors, c.Fitness)
	res, err := evolve.Run(e.Ctx, c)
	if err != nil {
		return err
	}
	cfg := prune.LevelConfig{Names: res.Names, Levels: res.Levels}
	e.Log("final parent: fitness %.5f, %d parameters (%d generations, %d resumed)", res.Fitness, res.Params, res.Generations, res.Resumed)
	gens, err := evolve.ReadGenerations(filepath.Join(logDir, evolve.GenerationsFile))
	if err != nil {
		return fmt.Errorf("reading the search log: %w", err)
	}
	var log []SearchLogRow
	for _, g := range gens {
		if g.Fitness == nil {
			continue
		}
		log = append(log, SearchLogRow{Generation: g.Generation, Phase: int32(len(c.Survivors) - 1), Candidate: int32(g.Candidate),
			Fitness: *g.Fitness, Params: g.Params, Best: true})
	}
	if len(log) == 0 && c.Generations > 0 {
		return errors.New("the search log has no scored generation")
	}
	if err := writeJSON(filepath.Join(e.Dir, "search_log.json"), log); err != nil {
		return err
	}
	return saveStitched(e, db, cfg)
}
