package train

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// RunConfig describes a training run: `darwinlm train` is flags plus one
// call to Run, and experiments call Run for post-training.
type RunConfig struct {
	Backend backend.Backend
	Model   *model.Model // trained in place
	// ModelName identifies the model in the run's settings (resume refuses
	// a checkpoint of another model); e.g. the --model spec.
	ModelName string
	Teacher   *model.Model // optional, for distillation (Options.KDWeight)
	// TeacherName identifies the teacher in the settings.
	TeacherName string

	// Training text: Data is a data.ReadTexts SPEC tokenized with
	// Tokenizer (documents concatenated, see Tokenize); or, when Tokens is
	// set, that token stream is used and Data only names it in the settings.
	Data      string
	Tokenizer tokenizer.Tokenizer
	Tokens    []int

	SeqLen, Batch int
	// Budget: exactly one of Steps and TokenBudget (rounded up to whole
	// steps of SeqLen·Batch tokens).
	Steps       int
	TokenBudget int64
	Seed        uint64  // data order
	Options     Options // optimizer, schedule (Options.Steps is set by Run)

	// Out receives checkpoints (every CheckpointEvery steps and at the
	// end, the newest Keep kept), the Parquet log and, when SaveModel is
	// set, the final model in Out/final.
	Out             string
	CheckpointEvery int
	Keep            int
	Resume          bool // continue from Out's newest checkpoint (bitwise)
	// SaveModel writes the model's Hugging Face files into a folder (e.g.
	// model.SaveHF with a tokenizer source); nil writes no model files.
	SaveModel func(m *model.Model, dir string) error

	Log      io.Writer // messages (nil: none)
	LogEvery int       // a loss line to Log every N steps (0: none)
	// OnStep, when set, is called after every step; an error stops the run
	// (the CLI's testing flags use it).
	OnStep func(StepStats) error
}

// RunResult summarises a finished run.
type RunResult struct {
	Steps      int     // total steps done (including those before a resume)
	Tokens     int64   // total tokens
	FinalLoss  float64 // loss of the last step
	Checkpoint string  // folder of the final checkpoint
	Final      string  // Out/final, or "" without SaveModel
	Seconds    float64 // wall time of this invocation's training
	TokensPerS float64 // this invocation's tokens per second
	Log        []LogRow
}

// runSettings identify a run: resume refuses a checkpoint written with
// different settings, since the result would not be the uninterrupted run's.
// The field names are those checkpoints have always recorded.
type runSettings struct {
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

// Run trains cfg.Model in place. Every input is checked before any
// compute; the run can be interrupted through ctx (the checkpoints already
// written stay valid for Resume).
func Run(ctx context.Context, cfg RunConfig) (*RunResult, error) {
	logf := func(format string, a ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format, a...)
		}
	}
	m := cfg.Model
	switch {
	case m == nil:
		return nil, fmt.Errorf("train: no model")
	case cfg.Backend == nil:
		return nil, fmt.Errorf("train: no backend")
	case cfg.Out == "":
		return nil, fmt.Errorf("train: no output folder (--out)")
	case cfg.Data == "" && cfg.Tokens == nil:
		return nil, fmt.Errorf("train: no training data (--data)")
	case (cfg.Steps > 0) == (cfg.TokenBudget > 0):
		return nil, fmt.Errorf("train: give exactly one positive budget: steps (%d) or tokens (%d)", cfg.Steps, cfg.TokenBudget)
	case cfg.Tokens == nil && cfg.Tokenizer == nil:
		return nil, fmt.Errorf("train: %s: no tokenizer to encode the data", cfg.Data)
	}
	if cfg.SeqLen < 2 {
		return nil, fmt.Errorf("train: sequence length must be at least 2, got %d", cfg.SeqLen)
	}
	if m.Cfg.MaxSeq > 0 && cfg.SeqLen > m.Cfg.MaxSeq {
		return nil, fmt.Errorf("--seq-len %d exceeds the model's context of %d", cfg.SeqLen, m.Cfg.MaxSeq)
	}
	if cfg.Teacher == nil && cfg.Options.KDWeight > 0 {
		return nil, fmt.Errorf("kd weight %g needs a teacher model (--teacher)", cfg.Options.KDWeight)
	}
	o := cfg.Options
	if o.Schedule == "" {
		o.Schedule = "constant"
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ids := cfg.Tokens
	if ids == nil {
		docs, err := data.ReadTexts(cfg.Data)
		if err != nil {
			return nil, err
		}
		if ids = Tokenize(cfg.Tokenizer, docs); len(ids) == 0 {
			return nil, fmt.Errorf("%s: the corpus is empty (%d documents, no tokens)", cfg.Data, len(docs))
		}
	}
	for i, t := range ids {
		if t < 0 || t >= m.Cfg.Vocab {
			return nil, fmt.Errorf("%s: token %d has id %d, outside the model's vocabulary [0, %d)", cfg.Data, i, t, m.Cfg.Vocab)
		}
	}
	ld, err := NewLoader(ids, cfg.SeqLen, cfg.Batch, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Data, err)
	}
	steps := cfg.Steps
	if cfg.TokenBudget > 0 {
		per := int64(cfg.SeqLen * cfg.Batch)
		steps = int((cfg.TokenBudget + per - 1) / per)
	}
	o.Steps = steps
	tr, err := NewTrainer(cfg.Backend, m, cfg.Teacher, o)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	settings, err := json.Marshal(runSettings{Model: cfg.ModelName, Data: cfg.Data, SeqLen: cfg.SeqLen, Batch: cfg.Batch,
		Steps: steps, LR: o.LR, Schedule: o.Schedule, Warmup: o.Warmup, MinLR: o.MinLR, Optimizer: o.Optimizer,
		Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay, Clip: o.Clip, Seed: cfg.Seed,
		Teacher: cfg.TeacherName, KDWeight: o.KDWeight, KDTopK: o.KDTopK})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	var log []LogRow
	var done int64
	if cfg.Resume {
		dir, err := LatestCheckpoint(cfg.Out)
		if err != nil {
			return nil, err
		}
		if dir != "" {
			st, l, err := LoadCheckpoint(dir, tr, ld)
			if err != nil {
				return nil, err
			}
			if err := CompareSettings(st.Settings, settings, tr.Step); err != nil {
				return nil, fmt.Errorf("resume: checkpoint %s: %w", dir, err)
			}
			log, done = l, st.Tokens
			logf("resuming from %s (step %d of %d)\n", dir, tr.Step, steps)
		} else {
			logf("resume: no checkpoint in %s, starting from scratch\n", cfg.Out)
		}
	}
	var save SaveModel
	if cfg.SaveModel != nil {
		save = func(dir string) error { return cfg.SaveModel(m, dir) }
	}
	checkpoint := func() (string, error) {
		if err := finiteParams(tr); err != nil {
			return "", err
		}
		return SaveCheckpoint(cfg.Out, tr, ld, done, settings, log, save, cfg.Keep)
	}
	logf("training %s: %d params, %d tokens (%d sequences of %d), %d steps of %d×%d tokens\n",
		cfg.ModelName, tr.W.NumParams(), len(ids), ld.NumSeqs(), cfg.SeqLen, steps, cfg.Batch, cfg.SeqLen)
	bar := progress.New(int64(steps), "train")
	bar.Set(tr.Step)
	defer bar.Finish()
	start := time.Now()
	startTok := done
	var last StepStats
	for tr.Step < steps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("training interrupted at step %d: %w", tr.Step, err)
		}
		t0 := time.Now()
		st, err := tr.TrainStep(ld.Next())
		if err != nil {
			return nil, err
		}
		last = st
		done += int64(st.Tokens)
		log = append(log, LogRow{Step: int64(st.Step), Tokens: done, Loss: st.Loss, LR: st.LR,
			GradNorm: st.GradNorm, TokensPerS: float64(st.Tokens) / time.Since(t0).Seconds()})
		bar.Add(1)
		if cfg.LogEvery > 0 && st.Step%cfg.LogEvery == 0 {
			logf("step %d/%d  loss %.4f  lr %.3g  grad_norm %.3g\n", st.Step, steps, st.Loss, st.LR, st.GradNorm)
		}
		if cfg.CheckpointEvery > 0 && st.Step%cfg.CheckpointEvery == 0 && st.Step < steps {
			if _, err := checkpoint(); err != nil {
				return nil, err
			}
		}
		if cfg.OnStep != nil && tr.Step < steps {
			if err := cfg.OnStep(st); err != nil {
				return nil, err
			}
		}
	}
	bar.Finish()
	dir, err := checkpoint()
	if err != nil {
		return nil, err
	}
	res := &RunResult{Steps: tr.Step, Tokens: done, FinalLoss: last.Loss, Checkpoint: dir, Log: log}
	if save != nil {
		res.Final = filepath.Join(cfg.Out, "final")
		tmp := filepath.Join(cfg.Out, ".tmp-final")
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return nil, err
		}
		if err := save(tmp); err != nil {
			return nil, fmt.Errorf("saving the final model: %w", err)
		}
		os.RemoveAll(res.Final)
		if err := os.Rename(tmp, res.Final); err != nil {
			return nil, err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.TokensPerS = float64(done-startTok) / res.Seconds
	return res, nil
}

// finiteParams refuses to checkpoint non-finite weights.
func finiteParams(tr *Trainer) error {
	for _, p := range tr.Params() {
		for _, v := range p.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("step %d: parameter %s is not finite; no checkpoint written", tr.Step, p.Name)
			}
		}
	}
	return nil
}
