package experiment

import (
	"fmt"
	"math"
	"path/filepath"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/prune"
)

func init() {
	stageFuncs["database"] = runDatabase
	stageFuncs["oneshot"] = runOneShot
}

// DatabaseDir is where a database stage keeps its database.
func DatabaseDir(o *Output) string { return filepath.Join(o.Dir, "db") }

func runDatabase(e *Env) error {
	p := e.Profile
	d := p.Database
	docs, err := data.ReadTexts(p.Data.Calib)
	if err != nil {
		return err
	}
	sampler := d.Sampler
	if sampler == "" {
		sampler = "first"
	}
	calib, err := prune.SampleSequences(docs, e.Tok, d.CalibTokens, p.SeqLen, sampler, p.Seed)
	if err != nil {
		return fmt.Errorf("calibration data %s: %w", p.Data.Calib, err)
	}
	n := 0
	for _, s := range calib {
		n += len(s)
	}
	if d.Levels < 2 {
		return fmt.Errorf("database.levels: want >= 2 (dense and removed), got %d", d.Levels)
	}
	opts := prune.BuildOptions{Levels: d.Levels - 1, RelDamp: d.Damp, ModelID: p.Model,
		Calib: prune.CalibInfo{Spec: p.Data.Calib, Sampler: sampler, Seed: p.Seed, SeqLen: p.SeqLen, Tokens: n, Sequences: len(calib)}}
	e.Log("%d calibration sequences (%d tokens), %d levels", len(calib), n, d.Levels)
	return prune.Build(e.Ctx, e.Be, e.Dense, calib, opts, filepath.Join(e.Dir, "db"))
}

// openDatabase opens the database of the stage's database input and checks
// it belongs to the profile's model.
func openDatabase(e *Env) (*prune.Database, error) {
	in := e.Input("database")
	if in == nil {
		return nil, fmt.Errorf("no database stage in needs")
	}
	db, err := prune.OpenDatabase(DatabaseDir(in))
	if err != nil {
		return nil, err
	}
	if err := db.CheckModel(e.Dense); err != nil {
		return nil, err
	}
	return db, nil
}

// UniformTarget is the uniform level whose model is closest to target × the
// dense parameter count (the paper's target level), with its configuration.
func UniformTarget(db *prune.Database, target float64) (int, prune.LevelConfig, int64, error) {
	want := target * float64(db.Man.TotalParams)
	best, bestD := -1, math.Inf(1)
	var bestCfg prune.LevelConfig
	var bestP int64
	for l := 0; l < db.Man.NumLevels; l++ {
		c := prune.Uniform(db, l)
		p, err := db.Params(c)
		if err != nil {
			return 0, c, 0, err
		}
		if d := math.Abs(float64(p) - want); d < bestD {
			best, bestD, bestCfg, bestP = l, d, c, p
		}
	}
	return best, bestCfg, bestP, nil
}

// runOneShot stitches the uniform configuration at the target level, or the
// DP allocation (ZipLM-style) at the same parameter count as that uniform
// model, so every one-shot row has the same size.
func runOneShot(e *Env) error {
	db, err := openDatabase(e)
	if err != nil {
		return err
	}
	level, cfg, params, err := UniformTarget(db, e.Profile.Target)
	if err != nil {
		return err
	}
	switch e.Stage.Method {
	case "uniform":
		e.Log("uniform level %d: %d parameters (%.1f%% of %d)", level, params, 100*float64(params)/float64(db.Man.TotalParams), db.Man.TotalParams)
	case "dp":
		if cfg, err = prune.DP(db, params); err != nil {
			return err
		}
		p, _ := db.Params(cfg)
		e.Log("DP allocation at <= %d parameters: %d", params, p)
	default:
		return fmt.Errorf("unknown one-shot method %q", e.Stage.Method)
	}
	return saveStitched(e, db, cfg)
}

// saveStitched writes the stitched model, its level configuration
// (levels.txt, the reference format) and levels.json for the report.
func saveStitched(e *Env, db *prune.Database, cfg prune.LevelConfig) error {
	m, err := db.Stitch(e.Dense, cfg)
	if err != nil {
		return err
	}
	if err := cfg.Write(filepath.Join(e.Dir, "levels.txt")); err != nil {
		return err
	}
	if err := writeLevels(e, db, cfg); err != nil {
		return err
	}
	return e.SaveModel(m)
}

func writeLevels(e *Env, db *prune.Database, cfg prune.LevelConfig) error {
	levels, err := db.Check(cfg)
	if err != nil {
		return err
	}
	rows := make([]LevelRow, len(levels))
	for i, l := range levels {
		mi := db.Module(i)
		kind := "mlp"
		if mi.Unit == "head" {
			kind = "attn"
		}
		rows[i] = LevelRow{Module: mi.Name, Layer: int32(mi.Layer), Kind: kind, Level: int32(l)}
	}
	return writeJSON(filepath.Join(e.Dir, "levels.json"), rows)
}
