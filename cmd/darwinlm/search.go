package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/internal/progress"
)

func init() {
	var mf modelFlags
	c := evolve.DefaultConfig()
	var cacheMiB int64
	var genDelay time.Duration
	cmd := &cobra.Command{
		Use:   "search",
		Short: "Evolutionary search for per-module pruning levels with training-aware selection (DarwinLM)",
		Long: `search finds one pruning level per module (every layer's attention o_proj and
MLP down_proj) of a pruning database, at a fixed total size, that is best after
a little training: the DarwinLM search (the reference's
evo_struct_prune_search.py), with every candidate logged.

The parent starts with every module at --target-level. Each generation makes
--offspring distinct offspring by level-switch mutation: min(U{1,3}, U{1,3})
switches, each in a group (all down_proj modules, or all o_proj modules) chosen
in proportion to its size, lowering one module's level and raising another's by
--step-size, so every group's level sum never changes. Then the stages of
selection run: in each, every remaining candidate is stitched from the
database, fine-tuned from its database weights on the stage's training
sequences (AdamW, lr --lr, β (0.9, 0.999), weight decay 0.01, one sequence per
step; fresh each stage, nothing carries over), scored on the stage's fitness
tokens, and the best --survivors are kept. The parent joins before the last
stage (elitism); the last stage's survivor is the next parent. Each stage
draws new minibatches, shared by all its candidates.

Budgets (per stage, comma-separated lists of equal length; the released
script's values in brackets, for Llama-size models — scale them down for
small models and keep their ratios):
  --survivors        candidates kept after each stage [8,4,2,1]; the last must be 1
  --fitness-tokens   tokens scored per candidate, exactly [1024,2048,4096,8192]
  --train-tokens     fine-tuning tokens per candidate, whole sequences, at least
                     this many [10000,50000,100000,200000]; 0 everywhere turns
                     training off (training-unaware EvoPress selection, the ablation)
  --offspring        λ, offspring per generation [16]
  --generations      [200]; per generation 16+8+4+3 = 31 fine-tune-and-score
                     runs, ≥ 1.56M training and 73,728 fitness tokens at paper scale
Pools (sampled once; fitness and training from the first half of their
source's documents, held-out from the second half, as the reference):
  --calib-tokens     fitness pool, dense logits cached once [100000]
  --train-pool-tokens fine-tuning pool [500000]
  --eval-tokens      held-out pool for --eval-every [100000]
  --seq-len          pool sequence length [8196 in the script; here ≤ the
                     model's context, default min(context, 8192)]

Fitness (lower is better): kl = token-mean KL(dense ‖ candidate) over the full
vocabulary against the cached dense logits, the last position of each
sequence dropped [the paper's]; sparse_kl = the same over the dense model's
top --kl-topk logits; ppl = perplexity.

A non-integer --target-level starts from the best of --initially-generated
random configurations with that average level (scored on --initial-tokens
fitness tokens, no training); every group's size times the target must be an
integer. (The reference requires these flags but never implements them.)

The log folder --log holds settings.json, candidates.parquet (one row per
candidate per stage) and generations.parquet (one row per generation, with
held-out perplexity and KL every --eval-every generations), rewritten
atomically after every generation. --resume continues a killed run from its
log and reaches the same configuration and rows (apart from wall times) as an
uninterrupted run; every setting must match, except --generations, which may
grow. All randomness comes from --seed, split per generation and stage.
The final configuration is written to --out in the database's level format
(darwinlm stitch reads it); a JSON summary goes to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cc *cobra.Command, _ []string) error {
			progress.Quiet = mf.quiet
			c.Model, c.Tokenizer, c.Backend = mf.model, mf.tokenizer, mf.backend
			if mf.device >= 0 { // the search opens its backend by name
				c.Backend = fmt.Sprintf("%s:%d", mf.backend, mf.device)
			}
			c.CacheMemory = cacheMiB << 20
			if c.Log == "" {
				return fmt.Errorf("--log is required (the search log, also what --resume continues from)")
			}
			if c.Out == "" {
				return fmt.Errorf("--out is required (the level-configuration file to write)")
			}
			if genDelay > 0 {
				c.AfterGeneration = func(evolve.GenerationRow) { time.Sleep(genDelay) }
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := evolve.Run(ctx, c)
			if err != nil {
				return err
			}
			return printJSON(map[string]any{"run_id": res.RunID, "out": c.Out, "log": c.Log, "levels": res.Levels,
				"params": res.Params, "fitness": nullNaN(res.Fitness), "generations": res.Generations, "resumed_at": res.Resumed})
		},
	}
	mf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&c.Database, "database", "", "pruning database folder (darwinlm prune)")
	f.Float64Var(&c.TargetLevel, "target-level", c.TargetLevel, "start level of every module; fixes each group's level sum [paper: 5]")
	f.IntVar(&c.Offspring, "offspring", c.Offspring, "offspring per generation (λ) [paper: 16]")
	f.IntSliceVar(&c.Survivors, "survivors", c.Survivors, "survivors of each selection stage; the last must be 1 [paper: 8,4,2,1]")
	f.IntSliceVar(&c.FitnessTokens, "fitness-tokens", c.FitnessTokens, "fitness tokens of each stage [paper: 1024,2048,4096,8192]")
	f.IntSliceVar(&c.TrainTokens, "train-tokens", c.TrainTokens, "fine-tuning tokens of each stage; 0 = no training [paper: 10000,50000,100000,200000]")
	f.IntVar(&c.Generations, "generations", c.Generations, "generations [paper: 200]")
	f.IntVar(&c.StepSize, "step-size", c.StepSize, "levels moved by one switch [paper: 1]")
	f.IntVar(&c.InitiallyGenerated, "initially-generated", 0, "non-integer --target-level: random start configurations to choose from")
	f.IntVar(&c.InitialTokens, "initial-tokens", 0, "non-integer --target-level: fitness tokens that choose the start")
	f.StringVar(&c.Calib, "calib", "", "fitness-pool text (data SPEC: file, .jsonl/.parquet, folder, hf-dataset:ORG/NAME/CONFIG/SPLIT, optional [a:b])")
	f.StringVar(&c.TrainData, "train-data", "", "fine-tuning-pool text (default: --calib)")
	f.StringVar(&c.EvalData, "eval-data", "", "held-out-pool text (default: --calib; its second half is used)")
	f.StringVar(&c.Sampler, "sampler", c.Sampler, "pool sampler: random (the reference's: shuffled documents, pieces ≤ --seq-len) or first (consecutive windows)")
	f.IntVar(&c.SeqLen, "seq-len", 0, "pool sequence length (0: min(model context, 8192)) [script: 8196]")
	f.IntVar(&c.CalibTokens, "calib-tokens", c.CalibTokens, "fitness-pool tokens [paper: 100000]")
	f.IntVar(&c.TrainPoolTokens, "train-pool-tokens", c.TrainPoolTokens, "fine-tuning-pool tokens [paper: 500000]")
	f.IntVar(&c.EvalTokens, "eval-tokens", c.EvalTokens, "held-out-pool tokens; 0 = no held-out evaluation [paper: 100000]")
	f.StringVar(&c.Fitness, "fitness", c.Fitness, "fitness: kl, sparse_kl or ppl [paper: kl]")
	f.IntVar(&c.KLTopK, "kl-topk", c.KLTopK, "k of sparse_kl [paper: 10]")
	f.Float64Var(&c.LR, "lr", c.LR, "learning rate of the fine-tuning inside selection [paper: 1e-5]")
	f.Int64Var(&c.Seed, "seed", 0, "seed of all randomness (offspring, minibatches) [paper: 0]")
	f.BoolVar(&c.FitnessBefore, "fitness-before", false, "also score every candidate before fine-tuning (fitness_before_train)")
	f.IntVar(&c.EvalEvery, "eval-every", c.EvalEvery, "held-out perplexity and KL of the parent every N generations (and at the start and end) [paper: 20]")
	f.IntVar(&c.Workers, "workers", 1, "candidates evaluated at once; the CPU cores are split between them")
	f.StringVar(&c.Log, "log", "", "log folder: settings.json, candidates.parquet, generations.parquet")
	f.StringVar(&c.Out, "out", "", "write the final level configuration here")
	f.BoolVar(&c.Resume, "resume", false, "continue the search logged in --log")
	f.StringVar(&c.RunID, "run-id", "", "run id in the logs (default: a hash of the settings)")
	f.Int64Var(&cacheMiB, "cache-memory", evolve.DefaultCacheMemory>>20, "MiB of dense logits kept on the heap; a larger cache is mapped from a file in --log")
	f.DurationVar(&genDelay, "generation-delay", 0, "testing: sleep after each generation is logged")
	_ = f.MarkHidden("generation-delay")
	addQueueFlag(cmd, &c)
	addCommand(cmd)
}

// nullNaN turns NaN into JSON null.
func nullNaN(v float64) any {
	if v != v {
		return nil
	}
	return v
}
