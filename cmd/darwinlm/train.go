package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/train"
)

func init() {
	var mf modelFlags
	var rc train.RunConfig
	o := train.DefaultOptions()
	var out, teacherTok string
	var stopAfter int
	var saveProbs bool
	var stepDelay time.Duration
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train or fine-tune a model (next-token cross-entropy, optional distillation)",
		Long: `train fine-tunes a (possibly pruned) model on a text corpus.

Documents are tokenized one by one (BOS first when the tokenizer adds it),
concatenated and packed into sequences of --seq-len tokens; each epoch visits
them in an order drawn from --seed. The loss is the mean next-token
cross-entropy over the batch, optionally mixed with the KL divergence to a
teacher: loss = (1−a)·CE + a·KL(teacher ‖ student), with a = --kd-weight, over
the full vocabulary or, with --kd-topk k, over the teacher's top-k logits
(both renormalised over those k, as the reference's sparse_kl).

Every --checkpoint-every steps (and at the end) OUT/step-NNNNNNNN/ is written
atomically: the model in Hugging Face layout, train_state.safetensors (exact
weights and optimizer moments), state.json (step, data position, settings)
and the log; OUT/latest names the newest one. --resume continues from it and
gives bitwise the weights of an uninterrupted run. The training log (step,
tokens, loss, lr, grad_norm, tokens_per_s) is OUT/train_log.parquet; the final
model is also written to OUT/final. A summary JSON line goes to stdout.

The loop is train.Run, which experiments call for post-training too.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if rc.Data == "" {
				return fmt.Errorf("--data is required")
			}
			if c.Flags().Changed("tokens") == c.Flags().Changed("steps") {
				return fmt.Errorf("give exactly one of --tokens and --steps")
			}
			if c.Flags().Changed("steps") && rc.Steps <= 0 {
				return fmt.Errorf("nothing to do: --steps %d", rc.Steps)
			}
			if c.Flags().Changed("tokens") && rc.TokenBudget <= 0 {
				return fmt.Errorf("nothing to do: --tokens %d", rc.TokenBudget)
			}
			if rc.TeacherName == "" && o.KDWeight > 0 {
				return fmt.Errorf("--kd-weight needs --teacher")
			}
			if err := o.Validate(); err != nil {
				return fmt.Errorf("%w (see --optimizer, --lr, --beta1, --beta2, --eps, --weight-decay, --kd-weight, --kd-topk)", err)
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			if rc.TeacherName != "" {
				if rc.Teacher, _, err = model.Open(rc.TeacherName, teacherTok); err != nil {
					return fmt.Errorf("teacher: %w", err)
				}
			}
			o.SaveProbs = saveProbs
			rc.Backend, rc.Model, rc.ModelName, rc.Tokenizer, rc.Options, rc.Out = be, m, mf.model, tok, o, out
			tokSrc := tokenizerSource(mf.model, mf.tokenizer)
			if saveHF != nil {
				rc.SaveModel = func(m *model.Model, dir string) error { return saveHF(m, dir, tokSrc) }
			}
			if !mf.quiet {
				rc.Log = os.Stderr
			}
			ran := 0
			rc.OnStep = func(train.StepStats) error {
				if stepDelay > 0 {
					time.Sleep(stepDelay)
				}
				if ran++; stopAfter > 0 && ran >= stopAfter {
					return fmt.Errorf("stopped after %d steps (--stop-after)", stopAfter)
				}
				return nil
			}
			res, err := train.Run(c.Context(), rc)
			if err != nil {
				return err
			}
			return printJSON(map[string]any{"steps": res.Steps, "tokens": res.Tokens, "final_loss": res.FinalLoss,
				"checkpoint": res.Checkpoint, "final": res.Final, "seconds": res.Seconds, "tokens_per_s": res.TokensPerS})
		},
	}
	mf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&rc.Data, "data", "", "training text: text file, .jsonl/.parquet with a text column, folder of parquet shards, or hf-dataset:ORG/NAME/CONFIG/SPLIT")
	f.Int64Var(&rc.TokenBudget, "tokens", 0, "train on this many tokens (rounded up to whole steps)")
	f.IntVar(&rc.Steps, "steps", 0, "number of optimizer steps")
	f.IntVar(&rc.SeqLen, "seq-len", 256, "tokens per sequence")
	f.IntVar(&rc.Batch, "batch", 8, "sequences per step")
	f.Float64Var(&o.LR, "lr", 1e-4, "peak learning rate")
	f.StringVar(&o.Schedule, "schedule", "constant", "learning-rate schedule: constant, cosine or linear (decay after the warm-up)")
	f.IntVar(&o.Warmup, "warmup", 0, "linear warm-up steps")
	f.Float64Var(&o.MinLR, "min-lr", 0, "final learning rate of the cosine / linear decay")
	f.StringVar(&o.Optimizer, "optimizer", "adamw", "adamw or sgd")
	f.Float64Var(&o.Beta1, "beta1", 0.9, "AdamW β1")
	f.Float64Var(&o.Beta2, "beta2", 0.95, "AdamW β2")
	f.Float64Var(&o.Eps, "eps", 1e-8, "AdamW epsilon")
	f.Float64Var(&o.WeightDecay, "weight-decay", 0, "weight decay (decoupled for AdamW, added to the gradient for SGD)")
	f.Float64Var(&o.Clip, "clip", 0, "clip the global gradient norm to this value (0: off)")
	f.Uint64Var(&rc.Seed, "seed", 0, "data-order seed")
	f.StringVar(&out, "out", "", "output folder (checkpoints, log, final model)")
	f.IntVar(&rc.CheckpointEvery, "checkpoint-every", 0, "write a checkpoint every K steps (0: only at the end)")
	f.IntVar(&rc.Keep, "keep", 2, "checkpoints to keep")
	f.BoolVar(&rc.Resume, "resume", false, "continue from the newest checkpoint in --out")
	f.StringVar(&rc.TeacherName, "teacher", "", "teacher model for distillation")
	f.StringVar(&teacherTok, "teacher-tokenizer", "", "teacher tokenizer file (default: beside the teacher)")
	f.Float64Var(&o.KDWeight, "kd-weight", 0, "weight a of the KL term: loss = (1−a)·CE + a·KL")
	f.IntVar(&o.KDTopK, "kd-topk", 0, "KL over the teacher's top-k logits only (0: full vocabulary)")
	f.BoolVar(&saveProbs, "save-probs", false, "keep attention probabilities for the backward pass instead of recomputing them")
	f.IntVar(&rc.LogEvery, "log-every", 0, "print a log line to stderr every N steps")
	f.IntVar(&stopAfter, "stop-after", 0, "testing: stop with an error after N steps of this invocation")
	f.DurationVar(&stepDelay, "step-delay", 0, "testing: sleep after each step")
	_ = f.MarkHidden("stop-after")
	_ = f.MarkHidden("step-delay")
	addCommand(cmd)
}

// saveHF writes a model in Hugging Face layout (a variable so tests can
// swap it).
var saveHF = model.SaveHF

// tokenizerSource is the folder whose tokenizer files SaveHF copies.
func tokenizerSource(spec, tokPath string) string {
	if tokPath != "" {
		return filepath.Dir(tokPath)
	}
	p := spec
	if strings.HasPrefix(spec, "hf:") {
		r, err := hub.ResolveModel(spec)
		if err != nil {
			return ""
		}
		p = r
	}
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return filepath.Dir(p)
	}
	return p
}
