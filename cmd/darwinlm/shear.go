package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/shear"
	"github.com/darwinlm/darwinlm-go/train"
)

func init() {
	var mf modelFlags
	var dataSpec, targetConfig, out string
	var targetParams, tokens int64
	var cfg shear.Config
	var warmupFrac, targetWarmupFrac float64
	var logEvery int
	cmd := &cobra.Command{
		Use:   "shear",
		Short: "Sheared-LLaMA baseline: learn hard-concrete masks to a target shape, then shrink",
		Long: `shear prunes a dense model to a target shape the way Sheared-LLaMA does
(princeton-nlp/LLM-Shearing): hard-concrete (L0) gates over whole layers,
attention heads (per layer), MLP neurons (per layer) and the hidden dimension
(shared by all layers) are trained jointly with the weights on --data. A
Lagrangian λ1·gap + λ2·gap² per gate kind, maximised over the λs, pulls the
expected shape to the target; the target sparsity grows linearly from 0 over
the first --target-warmup of the steps. The weights use --lr, the gates and
multipliers --lag-lr; both follow a linear warm-up then cosine decay to 10%.

At the end the gates are made deterministic: in every row (the layers; the
heads of each layer; the neurons of each layer; the hidden units) exactly the
target's number of units with the largest σ(log α/β·0.8) are kept, with that
value folded into the weights, and the model is physically shrunk (embeddings,
norms and every matrix lose the removed hidden units; removed layers go).

The target is --target-config FILE (a config.json: hidden_size,
num_hidden_layers, num_attention_heads, intermediate_size) or --target-params
N (all layers kept, hidden size a multiple of the head dimension, MLP/hidden
ratio kept, the count closest to N). With grouped-query attention the head
gates act on query heads; a K/V head goes when none of its query heads stay.

Outputs in --out: model/ (Hugging Face layout, loads in every command),
shear_log.parquet (per step: losses, learning rates, expected and target
numbers of layers/heads/neurons/hidden units, λ sums) and report.json (also
printed on stdout). Continued pre-training is 'darwinlm train' on model/.
Dynamic batch loading over several domains is not implemented (one --data).
The defaults are the reference's settings for Llama-2-7B; the tiny models of
the mirror want a larger --lr (the example's 1e-3, see docs/shear.md).`,
		Example: `  darwinlm shear --model hf:raincandy-u/TinyStories-656K \
      --data 'hf-dataset:roneneldan/TinyStories/default/validation_prefix[:3000]' \
      --target-params 328000 --tokens 204800 --seq-len 128 --batch 2 --lr 1e-3 --out results/runs/shear`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if dataSpec == "" {
				return fmt.Errorf("--data is required")
			}
			if (targetConfig == "") == (targetParams == 0) {
				return fmt.Errorf("give exactly one of --target-config and --target-params")
			}
			if c.Flags().Changed("tokens") == c.Flags().Changed("steps") {
				return fmt.Errorf("give exactly one of --tokens and --steps")
			}
			if warmupFrac < 0 || warmupFrac > 1 || targetWarmupFrac < 0 || targetWarmupFrac > 1 {
				return fmt.Errorf("--warmup and --target-warmup are fractions of the steps in [0, 1] (got %g, %g)", warmupFrac, targetWarmupFrac)
			}
			if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
				return fmt.Errorf("--out %s exists and is not empty", out)
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			base, err := shear.BaseShape(m)
			if err != nil {
				return fmt.Errorf("%s: %w", mf.model, err)
			}
			if targetConfig != "" {
				cfg.Target, err = shear.TargetFromConfig(targetConfig, m.Cfg, base)
			} else {
				cfg.Target, err = shear.TargetFromParams(targetParams, m.Cfg, base)
			}
			if err != nil {
				return err
			}
			docs, err := data.ReadTexts(dataSpec)
			if err != nil {
				return err
			}
			cfg.Tokens = train.Tokenize(tok, docs)
			if c.Flags().Changed("tokens") {
				per := int64(cfg.SeqLen * cfg.Batch)
				if per <= 0 {
					return fmt.Errorf("--seq-len and --batch must be positive")
				}
				cfg.Steps = int((tokens + per - 1) / per)
			}
			cfg.Model, cfg.Backend = m, be
			cfg.Warmup = int(warmupFrac * float64(cfg.Steps))
			cfg.TargetWarmup = max(1, int(targetWarmupFrac*float64(cfg.Steps)))
			cfg.LogPath = filepath.Join(out, "shear_log.parquet")
			if _, err := cfg.Validate(); err != nil {
				return fmt.Errorf("%s: %w", dataSpec, err)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if !mf.quiet {
				fmt.Fprintf(os.Stderr, "shear %s: %v (%d params) → %v (%d params by the arithmetic), %d steps of %d×%d tokens\n",
					mf.model, base, m.NumParams(), cfg.Target, shear.Params(m.Cfg, cfg.Target), cfg.Steps, cfg.Batch, cfg.SeqLen)
			}
			bar := progress.New(int64(cfg.Steps), "shear")
			cfg.OnStep = func(r shear.LogRow) {
				bar.Add(1)
				if logEvery > 0 && r.Step%int64(logEvery) == 0 && !mf.quiet {
					fmt.Fprintf(os.Stderr, "step %d/%d  ce %.4f  lag %.4f  expected layers %.2f heads %.2f mlp %.1f hidden %.1f  (target %.2f %.2f %.1f %.1f)  λ1 hidden %.3g λ2 %.3g\n",
						r.Step, cfg.Steps, r.CE, r.LagLoss, r.ExpLayers, r.ExpHeads, r.ExpInter, r.ExpHidden, r.TgtLayers, r.TgtHeads, r.TgtInter, r.TgtHidden, r.L1Hidden, r.L2Hidden)
				}
			}
			small, rep, err := shear.Prune(context.Background(), cfg)
			bar.Finish()
			if err != nil {
				return err
			}
			if err := saveHF(small, filepath.Join(out, "model"), tokenizerSource(mf.model, mf.tokenizer)); err != nil {
				return fmt.Errorf("saving the sheared model: %w", err)
			}
			res := map[string]any{"model": filepath.Join(out, "model"), "log": cfg.LogPath, "base": rep.Base, "target": rep.Target,
				"kv_heads": rep.KVHeads, "dense_params": rep.DenseParams, "target_params": rep.TargetParams,
				"final_params": rep.FinalParams, "steps": rep.Steps, "tokens": rep.Tokens, "seconds": rep.Seconds,
				"final_ce": rep.FinalCE, "final_expected": rep.FinalExpected, "final_relative_gap": rep.FinalGap, "final_worst_row_gap": rep.FinalWorstGap,
				"within_1pct_from_step": rep.WithinStep, "kept_layers": rep.KeptLayers}
			b, _ := json.MarshalIndent(res, "", "  ")
			if err := atomicfile.WriteFile(filepath.Join(out, "report.json"), append(b, '\n')); err != nil {
				return err
			}
			return printJSON(res)
		},
	}
	mf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&dataSpec, "data", "", "pruning text: text file, .jsonl/.parquet with a text column, folder of parquet shards, or hf-dataset:ORG/NAME/CONFIG/SPLIT[a:b]")
	f.StringVar(&targetConfig, "target-config", "", "config.json of the target shape (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size)")
	f.Int64Var(&targetParams, "target-params", 0, "target parameter count: a uniform shape of about N parameters")
	f.Int64Var(&tokens, "tokens", 0, "pruning tokens (rounded up to whole steps; the paper: 0.4B)")
	f.IntVar(&cfg.Steps, "steps", 0, "pruning steps (instead of --tokens)")
	f.IntVar(&cfg.SeqLen, "seq-len", 256, "tokens per sequence")
	f.IntVar(&cfg.Batch, "batch", 8, "sequences per step")
	f.Float64Var(&cfg.LR, "lr", 1e-4, "peak learning rate of the weights (reference 1e-4)")
	f.Float64Var(&cfg.LagLR, "lag-lr", 1.0, "peak learning rate of the gates and the Lagrange multipliers (reference 1.0)")
	f.Float64Var(&warmupFrac, "warmup", 0.1, "learning-rate warm-up, as a fraction of the steps (reference 0.1)")
	f.Float64Var(&targetWarmupFrac, "target-warmup", 0.2, "fraction of the steps over which the target sparsity grows from 0 (reference 0.2)")
	f.Float64Var(&cfg.MinLRFrac, "min-lr-frac", 0.1, "end of the cosine decay, as a fraction of the peak (reference alpha_f 0.1)")
	f.Float64Var(&cfg.Clip, "clip", 1.0, "clip the global gradient norm (weights, gates and multipliers) to this value (0: off)")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of the data order, the gate initialisation and the gate samples")
	f.IntVar(&logEvery, "log-every", 0, "print a log line to stderr every N steps")
	f.StringVar(&out, "out", "", "output folder (model/, shear_log.parquet, report.json)")
	addCommand(cmd)
}
