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
	var saveProbs, force bool
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

An --out folder that holds an earlier run is refused unless --resume (continue
it) or --force (delete its checkpoints, log and final model, and start over).
A finished run with a constant schedule can be extended: --resume with a
larger --steps/--tokens continues it, bitwise as if the larger budget had
been asked from the start. With a cosine or linear schedule the learning rate
depends on the total, so start a new run from its model instead:
--model OUT --out NEW_OUT. Every command takes a run folder as --model (its
final model, or its latest checkpoint).

The loop is train.Run, which experiments call for post-training too.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) (err error) {
			if err := requireFlags(c, "out", "data"); err != nil {
				return err
			}
			if c.Flags().Changed("tokens") == c.Flags().Changed("steps") {
				return usagef(c, "give exactly one of --tokens and --steps")
			}
			if err := checkTrainFlags(c, &rc, &o); err != nil {
				return err
			}
			if rc.TeacherName == "" && o.KDWeight > 0 {
				return usagef(c, "--kd-weight needs --teacher")
			}
			if err := o.Validate(); err != nil {
				return fmt.Errorf("%w (see --optimizer, --lr, --beta1, --beta2, --eps, --weight-decay, --kd-weight, --kd-topk)", err)
			}
			if rc.Resume && force {
				return usagef(c, "--resume and --force contradict each other")
			}
			if err := checkWritableDir("--out", out); err != nil {
				return err
			}
			earlier, err := earlierRun(out)
			if err != nil {
				return err
			}
			if earlier != "" && !rc.Resume && !force {
				return usagef(c, "--out %s holds an earlier run (%s); give --resume to continue it or --force to delete it and start over", out, earlier)
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
			if earlier != "" && force {
				if err := removeRun(out); err != nil {
					return fmt.Errorf("--force: %w", err)
				}
			}
			// A run that fails before its first checkpoint leaves no empty
			// --out folder behind.
			if _, statErr := os.Stat(out); os.IsNotExist(statErr) {
				defer func() {
					if err != nil {
						os.Remove(out) // only when still empty
					}
				}()
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
				return mf.computeErr(be, err)
			}
			return printJSON(map[string]any{"steps": res.Steps, "tokens": res.Tokens, "final_loss": res.FinalLoss,
				"checkpoint": res.Checkpoint, "final": res.Final, "seconds": res.Seconds, "tokens_per_s": res.TokensPerS})
		},
	}
	mf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&rc.Data, "data", "", "required: training text: text file, .jsonl/.parquet with a text column, folder of parquet shards, or hf-dataset:ORG/NAME/CONFIG/SPLIT")
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
	f.StringVar(&out, "out", "", "output folder (checkpoints, log, final model); required")
	f.IntVar(&rc.CheckpointEvery, "checkpoint-every", 0, "write a checkpoint every K steps (0: only at the end)")
	f.IntVar(&rc.Keep, "keep", 2, "checkpoints to keep")
	f.BoolVar(&rc.Resume, "resume", false, "continue the run in --out from its newest checkpoint (also: extend a finished constant-schedule run to a larger --steps/--tokens)")
	f.BoolVar(&force, "force", false, "delete the earlier run in --out (checkpoints, log, final model) and start over")
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
	if r, _, err := model.ResolveRunDir(p); err == nil {
		return r // a training run's folder: its final model or latest checkpoint
	}
	return p
}

// checkTrainFlags checks the numbers of train's flags before anything is
// loaded, naming the flag (NaN and ±Inf are refused for every command by
// checkFloatFlags).
func checkTrainFlags(c *cobra.Command, rc *train.RunConfig, o *train.Options) error {
	ints := []struct {
		flag string
		v    int64
		min  int64
	}{
		{"--steps", int64(rc.Steps), 1}, {"--tokens", rc.TokenBudget, 1}, {"--seq-len", int64(rc.SeqLen), 2},
		{"--batch", int64(rc.Batch), 1}, {"--warmup", int64(o.Warmup), 0}, {"--checkpoint-every", int64(rc.CheckpointEvery), 0},
		{"--keep", int64(rc.Keep), 1}, {"--kd-topk", int64(o.KDTopK), 0}, {"--log-every", int64(rc.LogEvery), 0},
	}
	for _, x := range ints {
		name := strings.TrimPrefix(x.flag, "--")
		if (name == "steps" || name == "tokens") && !c.Flags().Changed(name) {
			continue
		}
		if x.v < x.min {
			return usagef(c, "%s must be at least %d, got %d", x.flag, x.min, x.v)
		}
	}
	if err := checkPositive(c, "--lr", o.LR); err != nil {
		return err
	}
	if err := checkPositive(c, "--eps", o.Eps); err != nil {
		return err
	}
	for _, x := range []struct {
		flag string
		v    float64
	}{{"--min-lr", o.MinLR}, {"--weight-decay", o.WeightDecay}, {"--clip", o.Clip}} {
		if err := checkNonNegative(c, x.flag, x.v); err != nil {
			return err
		}
	}
	if o.MinLR > o.LR {
		return usagef(c, "--min-lr %g is above --lr %g", o.MinLR, o.LR)
	}
	if !(o.Beta1 >= 0 && o.Beta1 < 1) {
		return usagef(c, "--beta1 must be in [0, 1), got %v", o.Beta1)
	}
	if !(o.Beta2 > 0 && o.Beta2 < 1) {
		return usagef(c, "--beta2 must be in (0, 1), got %v", o.Beta2)
	}
	if !(o.KDWeight >= 0 && o.KDWeight <= 1) {
		return usagef(c, "--kd-weight must be in [0, 1], got %v", o.KDWeight)
	}
	return nil
}

// runFiles are what a training run writes into its --out folder.
func isRunFile(name string) bool {
	switch name {
	case "latest", "final", "train_log.parquet", ".tmp-final", "train_log.parquet.tmp":
		return true
	}
	return strings.HasPrefix(name, "step-") || strings.HasPrefix(name, ".tmp-step-") || strings.HasPrefix(name, ".latest.tmp")
}

// earlierRun describes the run already in dir ("" when dir is missing or
// holds none).
func earlierRun(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("--out %s: %w", dir, err)
	}
	var found []string
	for _, e := range ents {
		if isRunFile(e.Name()) {
			found = append(found, e.Name())
		}
	}
	if len(found) == 0 {
		return "", nil
	}
	if ck, err := train.LatestCheckpoint(dir); err == nil && ck != "" {
		return "latest checkpoint " + filepath.Base(ck), nil
	}
	return strings.Join(found, ", "), nil
}

// removeRun deletes a run's files from dir, and nothing else.
func removeRun(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if isRunFile(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
