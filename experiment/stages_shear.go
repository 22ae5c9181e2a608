package experiment

import (
	"path/filepath"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/shear"
	"github.com/darwinlm/darwinlm-go/train"
)

func init() { stageFuncs["shear"] = runShear }

// runShear is the ShearedLlama baseline: Sheared-LLaMA's pruning stage
// (learned hard-concrete masks with Lagrangian constraints on layers,
// heads, neurons and the hidden size) to a uniform shape of target × the
// dense parameters, trained on the calibration pool, the data every method
// prunes with.
func runShear(e *Env) error {
	p := e.Profile
	sp := p.Shear
	docs, err := data.ReadTexts(p.Data.Calib)
	if err != nil {
		return err
	}
	base, err := shear.BaseShape(e.Dense)
	if err != nil {
		return err
	}
	target, err := shear.TargetFromParams(int64(p.Target*float64(e.Dense.NumParams())), e.Dense.Cfg, base)
	if err != nil {
		return err
	}
	bar := progress.New(int64(sp.Steps), e.Stage.ID+" steps")
	cfg := shear.Config{Model: e.Dense, Backend: e.Be, Target: target, Tokens: train.Tokenize(e.Tok, docs),
		SeqLen: p.SeqLen, Batch: max(sp.Batch, 1), Steps: sp.Steps, LR: sp.LR, LagLR: sp.LagrLR,
		Warmup: int(sp.WarmupPct * float64(sp.Steps)), Clip: 1, Beta1: 0.9, Beta2: 0.95, Seed: uint64(p.Seed),
		LogPath: filepath.Join(e.Dir, "shear_log.parquet"), OnStep: func(shear.LogRow) { bar.Add(1) }}
	m, rep, err := shear.Prune(e.Ctx, cfg)
	bar.Finish()
	if err != nil {
		return err
	}
	e.Log("target %+v: %d parameters (target %d), final CE %.4f, %d steps in %.1f s", target, rep.FinalParams, rep.TargetParams, rep.FinalCE, rep.Steps, rep.Seconds)
	log := make([]TrainRow, len(rep.Log))
	for i, r := range rep.Log {
		log[i] = TrainRow{Step: r.Step, Tokens: r.Tokens, Loss: r.Loss, LR: r.LR}
	}
	if err := writeJSON(filepath.Join(e.Dir, "train_log.json"), log); err != nil {
		return err
	}
	return e.SaveModel(m)
}
