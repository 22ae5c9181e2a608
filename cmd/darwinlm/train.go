package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/train"
)

// trainSettings identify a run: --resume refuses a checkpoint written with
// different settings, since the result would not be the uninterrupted run's.
type trainSettings struct {
	Model       string  `json:"model"`
	Data        string  `json:"data"`
	SeqLen      int     `json:"seq_len"`
	Batch       int     `json:"batch"`
	Steps       int     `json:"steps"`
	LR          float64 `json:"lr"`
	Schedule    string  `json:"schedule"`
	Warmup      int     `json:"warmup"`
	MinLR       float64 `json:"min_lr"`
	Optimizer   string  `json:"optimizer"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	Clip        float64 `json:"clip"`
	Seed        uint64  `json:"seed"`
	Teacher     string  `json:"teacher,omitempty"`
	KDWeight    float64 `json:"kd_weight,omitempty"`
	KDTopK      int     `json:"kd_topk,omitempty"`
}

func init() {
	var mf modelFlags
	var s trainSettings
	var tokens int64
	var out, teacherTok string
	var every, keep, logEvery, stopAfter int
	var resume, saveProbs bool
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
model is also written to OUT/final. A summary JSON line goes to stdout.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if s.Data == "" {
				return fmt.Errorf("--data is required")
			}
			if c.Flags().Changed("tokens") == c.Flags().Changed("steps") {
				return fmt.Errorf("give exactly one of --tokens and --steps")
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			s.Model = mf.model
			docs, err := data.ReadTexts(s.Data)
			if err != nil {
				return err
			}
			ids := train.Tokenize(tok, docs)
			if len(ids) == 0 {
				return fmt.Errorf("%s: the corpus is empty (%d documents, no tokens)", s.Data, len(docs))
			}
			ld, err := train.NewLoader(ids, s.SeqLen, s.Batch, s.Seed)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Data, err)
			}
			if m.Cfg.MaxSeq > 0 && s.SeqLen > m.Cfg.MaxSeq {
				return fmt.Errorf("--seq-len %d exceeds the model's context of %d", s.SeqLen, m.Cfg.MaxSeq)
			}
			if c.Flags().Changed("tokens") {
				per := int64(s.SeqLen * s.Batch)
				s.Steps = int((tokens + per - 1) / per)
			}
			if s.Steps <= 0 {
				return fmt.Errorf("nothing to do: %d steps", s.Steps)
			}
			var teacher *model.Model
			if s.Teacher != "" {
				if teacher, _, err = model.Open(s.Teacher, teacherTok); err != nil {
					return fmt.Errorf("teacher: %w", err)
				}
			} else if s.KDWeight > 0 {
				return fmt.Errorf("--kd-weight needs --teacher")
			}
			tr, err := train.NewTrainer(be, m, teacher, train.Options{Optimizer: s.Optimizer, LR: s.LR, Schedule: s.Schedule,
				Warmup: s.Warmup, MinLR: s.MinLR, Steps: s.Steps, Beta1: s.Beta1, Beta2: s.Beta2, Eps: s.Eps,
				WeightDecay: s.WeightDecay, Clip: s.Clip, KDWeight: s.KDWeight, KDTopK: s.KDTopK, SaveProbs: saveProbs})
			if err != nil {
				return err
			}
			settings, _ := json.Marshal(s)
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			var log []train.LogRow
			var done int64
			if resume {
				dir, err := train.LatestCheckpoint(out)
				if err != nil {
					return err
				}
				if dir != "" {
					st, l, err := train.LoadCheckpoint(dir, tr, ld)
					if err != nil {
						return err
					}
					var was bytes.Buffer
					_ = json.Compact(&was, st.Settings)
					if was.String() != string(settings) {
						return fmt.Errorf("--resume: checkpoint %s was written with other settings:\n  checkpoint: %s\n  this run:   %s", dir, was.String(), settings)
					}
					log, done = l, st.Tokens
					if !mf.quiet {
						fmt.Fprintf(os.Stderr, "resuming from %s (step %d of %d)\n", dir, tr.Step, s.Steps)
					}
				} else if !mf.quiet {
					fmt.Fprintf(os.Stderr, "--resume: no checkpoint in %s, starting from scratch\n", out)
				}
			}
			tokSrc := tokenizerSource(mf.model, mf.tokenizer)
			var save train.SaveModel
			if saveHF != nil {
				save = func(dir string) error { return saveHF(m, dir, tokSrc) }
			}
			checkpoint := func() (string, error) {
				if err := finiteParams(tr); err != nil {
					return "", err
				}
				return train.SaveCheckpoint(out, tr, ld, done, settings, log, save, keep)
			}
			if !mf.quiet {
				fmt.Fprintf(os.Stderr, "training %s: %d params, %d tokens (%d sequences of %d), %d steps of %d×%d tokens\n",
					mf.model, tr.W.NumParams(), len(ids), ld.NumSeqs(), s.SeqLen, s.Steps, s.Batch, s.SeqLen)
			}
			bar := progress.New(int64(s.Steps), "train")
			bar.Set(tr.Step)
			start := time.Now()
			startTok := done
			ranThisRun := 0
			var last train.StepStats
			for tr.Step < s.Steps {
				t0 := time.Now()
				st, err := tr.TrainStep(ld.Next())
				if err != nil {
					bar.Finish()
					return err
				}
				if stepDelay > 0 {
					time.Sleep(stepDelay)
				}
				last = st
				done += int64(st.Tokens)
				log = append(log, train.LogRow{Step: int64(st.Step), Tokens: done, Loss: st.Loss, LR: st.LR,
					GradNorm: st.GradNorm, TokensPerS: float64(st.Tokens) / time.Since(t0).Seconds()})
				bar.Add(1)
				if logEvery > 0 && st.Step%logEvery == 0 && !mf.quiet {
					fmt.Fprintf(os.Stderr, "step %d/%d  loss %.4f  lr %.3g  grad_norm %.3g\n", st.Step, s.Steps, st.Loss, st.LR, st.GradNorm)
				}
				if every > 0 && st.Step%every == 0 && st.Step < s.Steps {
					if _, err := checkpoint(); err != nil {
						return err
					}
				}
				ranThisRun++
				if stopAfter > 0 && ranThisRun >= stopAfter && tr.Step < s.Steps {
					bar.Finish()
					return fmt.Errorf("stopped after %d steps (--stop-after)", stopAfter)
				}
			}
			bar.Finish()
			dir, err := checkpoint()
			if err != nil {
				return err
			}
			final := ""
			if save != nil {
				final = filepath.Join(out, "final")
				tmp := filepath.Join(out, ".tmp-final")
				os.RemoveAll(tmp)
				if err := os.MkdirAll(tmp, 0o755); err != nil {
					return err
				}
				if err := save(tmp); err != nil {
					return fmt.Errorf("saving the final model: %w", err)
				}
				os.RemoveAll(final)
				if err := os.Rename(tmp, final); err != nil {
					return err
				}
			}
			secs := time.Since(start).Seconds()
			return printJSON(map[string]any{"steps": tr.Step, "tokens": done, "final_loss": last.Loss,
				"checkpoint": dir, "final": final, "seconds": secs, "tokens_per_s": float64(done-startTok) / secs})
		},
	}
	mf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&s.Data, "data", "", "training text: text file, .jsonl/.parquet with a text column, folder of parquet shards, or hf-dataset:ORG/NAME/CONFIG/SPLIT")
	f.Int64Var(&tokens, "tokens", 0, "train on this many tokens (rounded up to whole steps)")
	f.IntVar(&s.Steps, "steps", 0, "number of optimizer steps")
	f.IntVar(&s.SeqLen, "seq-len", 256, "tokens per sequence")
	f.IntVar(&s.Batch, "batch", 8, "sequences per step")
	f.Float64Var(&s.LR, "lr", 1e-4, "peak learning rate")
	f.StringVar(&s.Schedule, "schedule", "constant", "learning-rate schedule: constant, cosine or linear (decay after the warm-up)")
	f.IntVar(&s.Warmup, "warmup", 0, "linear warm-up steps")
	f.Float64Var(&s.MinLR, "min-lr", 0, "final learning rate of the cosine / linear decay")
	f.StringVar(&s.Optimizer, "optimizer", "adamw", "adamw or sgd")
	f.Float64Var(&s.Beta1, "beta1", 0.9, "AdamW β1")
	f.Float64Var(&s.Beta2, "beta2", 0.95, "AdamW β2")
	f.Float64Var(&s.Eps, "eps", 1e-8, "AdamW epsilon")
	f.Float64Var(&s.WeightDecay, "weight-decay", 0, "weight decay (decoupled for AdamW, added to the gradient for SGD)")
	f.Float64Var(&s.Clip, "clip", 0, "clip the global gradient norm to this value (0: off)")
	f.Uint64Var(&s.Seed, "seed", 0, "data-order seed")
	f.StringVar(&out, "out", "", "output folder (checkpoints, log, final model)")
	f.IntVar(&every, "checkpoint-every", 0, "write a checkpoint every K steps (0: only at the end)")
	f.IntVar(&keep, "keep", 2, "checkpoints to keep")
	f.BoolVar(&resume, "resume", false, "continue from the newest checkpoint in --out")
	f.StringVar(&s.Teacher, "teacher", "", "teacher model for distillation")
	f.StringVar(&teacherTok, "teacher-tokenizer", "", "teacher tokenizer file (default: beside the teacher)")
	f.Float64Var(&s.KDWeight, "kd-weight", 0, "weight a of the KL term: loss = (1−a)·CE + a·KL")
	f.IntVar(&s.KDTopK, "kd-topk", 0, "KL over the teacher's top-k logits only (0: full vocabulary)")
	f.BoolVar(&saveProbs, "save-probs", false, "keep attention probabilities for the backward pass instead of recomputing them")
	f.IntVar(&logEvery, "log-every", 0, "print a log line to stderr every N steps")
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

// finiteParams refuses to checkpoint non-finite weights.
func finiteParams(tr *train.Trainer) error {
	for _, p := range tr.Params() {
		for _, v := range p.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("step %d: parameter %s is not finite; no checkpoint written", tr.Step, p.Name)
			}
		}
	}
	return nil
}
