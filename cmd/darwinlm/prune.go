package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
)

func init() {
	var mf modelFlags
	var calib, sampler, attnRemoved, mlpRemoved, out string
	var calibTokens, seqLen, levels, neuronMult, batchTokens int
	var seed int64
	var damp float64
	var force bool
	c := &cobra.Command{
		Use:   "database",
		Short: "Build the pruning database: structured OBS of every layer's heads and MLP neurons at every level",
		Long: `database runs the dense model over calibration text, accumulates for every
layer the Hessians H = (2/n_seq)·Σ x xᵀ of the inputs of o_proj (attention
output) and down_proj (SwiGLU activation), and prunes both matrices greedily
with the structured Optimal Brain Surgeon update (ZipLM-style, as DarwinLM's
reference code): attention heads as groups of head_dim columns of o_proj,
MLP neurons as single columns of down_proj, the remaining weights updated to
compensate. Levels 0 (dense) .. K (module removed) are nested snapshots of
one greedy pass; level l removes round(l·U/K) of a module's U units (MLP
counts rounded to --neuron-multiple), or the counts of --attn-removed and
--mlp-removed.

The database folder holds database.json (model id and weight hash,
calibration settings, per module the removal order and per level the units
removed, accumulated error and parameters left) and one safetensors file per
module and level with the compensated o_proj / down_proj, removed columns
physically absent. It is written atomically; an existing database is
replaced only with --force.

Calibration (--calib: a text file, .jsonl/.parquet, folder or
hf-dataset:ORG/NAME/CONFIG/SPLIT[a:b]): --sampler first tokenizes the whole
text as ppl does and cuts its first --calib-tokens tokens into windows of
--seq-len; --sampler random shuffles the documents with --seed and cuts each
into pieces of at most --seq-len (the reference's FineWeb-Edu sampler).`,
		Example: `  darwinlm database --model hf:raincandy-u/TinyStories-656K \
      --calib hf-dataset:roneneldan/TinyStories/default/validation_prefix \
      --calib-tokens 65536 --seq-len 512 --sampler first --levels 10 --out results/db-656k`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if calib == "" {
				return fmt.Errorf("--calib is required")
			}
			if calibTokens < 1 {
				return fmt.Errorf("--calib-tokens must be positive, got %d", calibTokens)
			}
			if seqLen < 1 {
				return fmt.Errorf("--seq-len must be positive, got %d", seqLen)
			}
			if sampler != "first" && sampler != "random" {
				return fmt.Errorf("--sampler must be first or random, got %q", sampler)
			}
			if damp < 0 {
				return fmt.Errorf("--damp must be non-negative, got %v", damp)
			}
			ar, err := prune.ParseCountList(attnRemoved, "--attn-removed")
			if err != nil {
				return err
			}
			mr, err := prune.ParseCountList(mlpRemoved, "--mlp-removed")
			if err != nil {
				return err
			}
			if ar == nil && mr == nil && levels < 1 {
				return fmt.Errorf("--levels must be at least 1, got %d", levels)
			}
			if err := prune.CheckOutput(out, force); err != nil {
				return err
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			if m.Cfg.MaxSeq > 0 && seqLen > m.Cfg.MaxSeq {
				return fmt.Errorf("--seq-len %d exceeds the model's maximum length %d", seqLen, m.Cfg.MaxSeq)
			}
			docs, err := data.ReadTexts(calib)
			if err != nil {
				return fmt.Errorf("--calib: %w", err)
			}
			seqs, err := prune.SampleSequences(docs, tok, calibTokens, seqLen, sampler, seed)
			if err != nil {
				return fmt.Errorf("--calib %s: %w", calib, err)
			}
			opts := prune.BuildOptions{Levels: levels, NeuronMultiple: neuronMult, AttnRemoved: ar, MLPRemoved: mr,
				RelDamp: damp, NoDamp: damp == 0, ModelID: mf.model, Force: force, BatchTokens: batchTokens,
				Calib: prune.CalibInfo{Spec: calib, Sampler: sampler, Seed: seed, SeqLen: seqLen}}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if opts.OBS, err = databaseQueue(ctx, m, seqs, opts); err != nil {
				return err
			}
			if err := prune.Build(ctx, be, m, seqs, opts, out); err != nil {
				return mf.computeErr(be, err)
			}
			db, err := prune.OpenDatabase(out)
			if err != nil {
				return err
			}
			return printJSON(map[string]any{"database": out, "modules": db.NumModules(), "levels": db.Man.NumLevels,
				"calib_tokens": db.Man.Calibration.Tokens, "sequences": db.Man.Calibration.Sequences,
				"dense_params": db.Man.TotalParams, "prunable_params": db.PrunableParams()})
		},
	}
	mf.register(c)
	f := c.Flags()
	f.StringVar(&calib, "calib", "", "calibration text (file, parquet/jsonl, folder or hf-dataset: id)")
	f.IntVar(&calibTokens, "calib-tokens", 65536, "calibration tokens")
	f.IntVar(&seqLen, "seq-len", 512, "calibration sequence length (at most the model's context)")
	f.StringVar(&sampler, "sampler", "random", "calibration sampler: first (consecutive windows of the whole text) or random (shuffled documents, the reference's)")
	f.Int64Var(&seed, "seed", 0, "shuffle seed of --sampler random")
	f.IntVar(&levels, "levels", 10, "K: levels 0 (dense) .. K (module removed), evenly spaced")
	f.IntVar(&neuronMult, "neuron-multiple", 0, "round MLP level steps to this many neurons (0: 32 when the MLP has ≥2048 neurons, else 1)")
	f.StringVar(&attnRemoved, "attn-removed", "", "explicit heads removed per level, e.g. 0,4,7,11 (overrides --levels)")
	f.StringVar(&mlpRemoved, "mlp-removed", "", "explicit neurons removed per level, e.g. 0,1440,2880 (overrides --levels)")
	f.Float64Var(&damp, "damp", 0.01, "relative damping: add damp·mean(diag H) to diag H (0: none)")
	f.BoolVar(&force, "force", false, "replace an existing database at --out")
	f.IntVar(&batchTokens, "batch-tokens", 4096, "tokens per forward batch during Hessian capture")
	f.StringVar(&out, "out", "", "database folder to write")
	addDatabaseQueueFlag(c)
	addCommand(c)

	addCommand(stitchCmd())
	addCommand(oneshotCmd())
}

func stitchCmd() *cobra.Command {
	var mf modelFlags
	var dbDir, levelsPath, out, format string
	c := &cobra.Command{
		Use:   "stitch",
		Short: "Build a pruned model from a database and a level configuration",
		Long: `stitch takes the dense model the database was built from (checked by its
weight hash), puts every module at the level the configuration file names
(one "NAME: LEVEL" line per module, e.g. model.layers.3.self_attn.o_proj: 4,
the reference's format) and writes a Hugging Face checkpoint folder.

--format shrunk (default) removes heads and neurons physically: q/k/v and
gate/up rows of removed units are dropped, o_proj / down_proj hold the
compensated weights, layers get their own widths (darwinlm_layer_widths in
config.json), and every command loads and runs the model at its reduced cost.
--format zeroed keeps the original shapes with zero columns (the reference's
simulation), for tools that cannot vary widths per layer.`,
		Example: `  darwinlm stitch --model hf:raincandy-u/TinyStories-656K --database results/db-656k \
      --levels uniform5.txt --out results/656k-uniform5`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dbDir == "" || levelsPath == "" || out == "" {
				return fmt.Errorf("--database, --levels and --out are required")
			}
			if format != "shrunk" && format != "zeroed" {
				return fmt.Errorf("--format must be shrunk or zeroed, got %q", format)
			}
			if err := checkModelOut(out); err != nil {
				return err
			}
			db, err := prune.OpenDatabase(dbDir)
			if err != nil {
				return err
			}
			cfg, err := prune.ReadLevelConfig(levelsPath)
			if err != nil {
				return err
			}
			params, err := db.Params(cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", levelsPath, err)
			}
			m, _, _, err := mf.load()
			if err != nil {
				return err
			}
			if err := db.CheckModel(m); err != nil {
				return err
			}
			var sm *model.Model
			if format == "shrunk" {
				sm, err = db.Stitch(m, cfg)
			} else {
				sm, err = db.StitchZeroed(m, cfg)
			}
			if err != nil {
				return err
			}
			if err := saveHF(sm, out, tokenizerSource(mf.model, mf.tokenizer)); err != nil {
				return err
			}
			return printJSON(map[string]any{"out": out, "format": format, "params": params, "model_params": sm.NumParams(),
				"dense_params": m.NumParams(), "fraction": float64(params) / float64(m.NumParams())})
		},
	}
	mf.register(c)
	c.Flags().StringVar(&dbDir, "database", "", "pruning database folder")
	c.Flags().StringVar(&levelsPath, "levels", "", "level configuration file (NAME: LEVEL lines)")
	c.Flags().StringVar(&out, "out", "", "output model folder")
	c.Flags().StringVar(&format, "format", "shrunk", "shrunk (per-layer widths) or zeroed (original shapes, zero columns)")
	return c
}

// checkModelOut refuses an output model folder that exists and is neither
// empty nor a model folder (SaveHF's rule), before any compute.
func checkModelOut(out string) error {
	st, err := os.Stat(out)
	if os.IsNotExist(err) {
		if _, err := os.Stat(filepath.Dir(out)); err != nil {
			return fmt.Errorf("--out %s: parent folder: %w", out, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--out %s exists and is not a folder", out)
	}
	ents, _ := os.ReadDir(out)
	if len(ents) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		return fmt.Errorf("--out %s exists, is not empty and holds no config.json; refusing to replace it", out)
	}
	return nil
}

func oneshotCmd() *cobra.Command {
	var modelSpec, tokPath, dbDir, strategy, out string
	var level int
	var targetParams int64
	var targetFrac float64
	var quiet bool
	c := &cobra.Command{
		Use:   "oneshot",
		Short: "One-shot level configurations from a database: uniform, or a DP allocation under a parameter budget",
		Long: `oneshot writes a level configuration (the reference's "NAME: LEVEL" format)
without search.

--strategy uniform puts every module at --level.
--strategy dp minimises the summed OBS error of the chosen levels, each
module's errors normalised by its error at the last level (the module's whole
output energy), subject to the stitched model having at most --target-params
parameters (or --target-fraction of the dense model's). It is the
ZipLM-style allocation of the paper's ZipLM rows, solved exactly by dynamic
programming over parameter quanta.

Both print the configuration's parameter count. --model, when given, is
checked against the database's weight hash.`,
		Example: `  darwinlm oneshot --database results/db-656k --strategy uniform --level 5 --out uniform5.txt
  darwinlm oneshot --database results/db-656k --strategy dp --target-fraction 0.6 --out dp60.txt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			progress.Quiet = quiet
			if dbDir == "" || out == "" {
				return fmt.Errorf("--database and --out are required")
			}
			switch strategy {
			case "uniform":
				if cmd.Flags().Changed("target-params") || cmd.Flags().Changed("target-fraction") {
					return fmt.Errorf("--strategy uniform takes --level, not --target-params/--target-fraction")
				}
			case "dp":
				tp, tf := cmd.Flags().Changed("target-params"), cmd.Flags().Changed("target-fraction")
				if tp == tf {
					return fmt.Errorf("--strategy dp needs exactly one of --target-params and --target-fraction")
				}
				if tf && !(targetFrac > 0 && targetFrac <= 1) {
					return fmt.Errorf("--target-fraction must be in (0, 1], got %v", targetFrac)
				}
				if tp && targetParams <= 0 {
					return fmt.Errorf("--target-params must be positive, got %d", targetParams)
				}
			default:
				return fmt.Errorf("--strategy must be uniform or dp, got %q", strategy)
			}
			if st, err := os.Stat(out); err == nil && st.IsDir() {
				return fmt.Errorf("--out %s is a folder; give a file name", out)
			}
			db, err := prune.OpenDatabase(dbDir)
			if err != nil {
				return err
			}
			if modelSpec != "" {
				m, _, err := model.Open(modelSpec, tokPath)
				if err != nil {
					return err
				}
				if err := db.CheckModel(m); err != nil {
					return err
				}
			}
			var cfg prune.LevelConfig
			if strategy == "uniform" {
				if level < 0 || level >= db.Man.NumLevels {
					return fmt.Errorf("--level %d does not exist (the database has levels 0..%d)", level, db.Man.NumLevels-1)
				}
				cfg = prune.Uniform(db, level)
			} else {
				if targetParams == 0 {
					targetParams = int64(targetFrac * float64(db.Man.TotalParams))
				}
				if cfg, err = prune.DP(db, targetParams); err != nil {
					return err
				}
			}
			params, err := db.Params(cfg)
			if err != nil {
				return err
			}
			if err := cfg.Write(out); err != nil {
				return err
			}
			return printJSON(map[string]any{"out": out, "strategy": strategy, "params": params, "dense_params": db.Man.TotalParams,
				"fraction": float64(params) / float64(db.Man.TotalParams), "levels": cfg.Levels})
		},
	}
	c.Flags().StringVar(&modelSpec, "model", "", "dense model to check against the database (optional)")
	c.Flags().StringVar(&tokPath, "tokenizer", "", "tokenizer file for --model (default: found beside the model)")
	c.Flags().StringVar(&dbDir, "database", "", "pruning database folder")
	c.Flags().StringVar(&strategy, "strategy", "uniform", "uniform or dp")
	c.Flags().IntVar(&level, "level", 5, "the level of every module (uniform)")
	c.Flags().Int64Var(&targetParams, "target-params", 0, "parameter budget of the whole model (dp)")
	c.Flags().Float64Var(&targetFrac, "target-fraction", 0, "parameter budget as a fraction of the dense model (dp)")
	c.Flags().StringVar(&out, "out", "", "level configuration file to write")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	return c
}
