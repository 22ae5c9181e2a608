package train

import (
	"fmt"
	"math"
)

// Options configures a Trainer or a FineTuner. There is no implicit
// default: the zero value is rejected by Validate (it would otherwise mean
// AdamW with β = 0 and lr 0). Start from a preset — SelectionPreset for the
// reference's training-aware selection, DefaultOptions for the CLI's
// defaults — and change fields from there.
type Options struct {
	Optimizer   string  // "adamw" or "sgd"; required
	LR          float64 // peak learning rate (> 0)
	Schedule    string  // "constant" ("" means constant), "cosine" or "linear"
	Warmup      int     // warm-up steps
	MinLR       float64 // end value of cosine / linear decay
	Steps       int     // total steps (for the schedule; a FineTuner uses len(seqs) when 0)
	Beta1       float64 // AdamW β1 in [0, 1)
	Beta2       float64 // AdamW β2 in (0, 1)
	Eps         float64 // AdamW eps (> 0)
	WeightDecay float64 // decoupled for AdamW, coupled for SGD
	Clip        float64 // global-norm clipping; ≤ 0 disables
	// Knowledge distillation: loss = (1−KDWeight)·CE + KDWeight·KL(teacher ‖
	// student), KL over the full vocabulary, or over the teacher's top-k
	// logits when KDTopK > 0 (the reference's sparse_kl).
	KDWeight float64
	KDTopK   int
	// SaveProbs stores attention probabilities instead of recomputing them.
	SaveProbs bool
}

// DefaultOptions are the CLI's defaults: AdamW(0.9, 0.95, 1e-8), constant lr
// 1e-4, no weight decay, no clipping.
func DefaultOptions() Options {
	return Options{Optimizer: "adamw", LR: 1e-4, Schedule: "constant", Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}
}

// SelectionPreset is the reference's fine-tuning inside training-aware
// selection (paper-notes; torch.optim.AdamW in the reference's evolution
// loop): AdamW, lr 1e-5, β = (0.9, 0.999), eps 1e-8, weight decay 0.01 on
// every parameter, constant learning rate, no clipping. Use it with a
// FineTuner: batch = one sequence, one optimizer step per sequence.
func SelectionPreset() Options {
	return Options{Optimizer: "adamw", LR: 1e-5, Schedule: "constant", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// Validate checks every field; the messages name the field.
func (o Options) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch o.Optimizer {
	case "adamw", "sgd":
	case "":
		return fmt.Errorf("options: optimizer is not set (start from train.SelectionPreset() or train.DefaultOptions())")
	default:
		return fmt.Errorf("options: unknown optimizer %q (want adamw or sgd)", o.Optimizer)
	}
	if !(o.LR > 0) || !finite(o.LR) {
		return fmt.Errorf("options: learning rate must be positive and finite, got %g", o.LR)
	}
	if err := o.schedule(0).Validate(); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	if o.Warmup < 0 || o.Steps < 0 {
		return fmt.Errorf("options: warmup (%d) and steps (%d) must not be negative", o.Warmup, o.Steps)
	}
	if !(o.MinLR >= 0) || !finite(o.MinLR) {
		return fmt.Errorf("options: min lr must be ≥ 0, got %g", o.MinLR)
	}
	if o.Optimizer == "adamw" {
		if !(o.Beta1 >= 0 && o.Beta1 < 1) {
			return fmt.Errorf("options: AdamW beta1 must be in [0, 1), got %g", o.Beta1)
		}
		if !(o.Beta2 > 0 && o.Beta2 < 1) {
			return fmt.Errorf("options: AdamW beta2 must be in (0, 1), got %g (start from train.SelectionPreset() or train.DefaultOptions())", o.Beta2)
		}
		if !(o.Eps > 0) || !finite(o.Eps) {
			return fmt.Errorf("options: AdamW eps must be positive, got %g", o.Eps)
		}
	}
	if !(o.WeightDecay >= 0) || !finite(o.WeightDecay) {
		return fmt.Errorf("options: weight decay must be ≥ 0, got %g", o.WeightDecay)
	}
	if math.IsNaN(o.Clip) {
		return fmt.Errorf("options: clip is NaN")
	}
	if !(o.KDWeight >= 0 && o.KDWeight <= 1) {
		return fmt.Errorf("options: kd weight must be in [0, 1], got %g", o.KDWeight)
	}
	if o.KDTopK < 0 {
		return fmt.Errorf("options: kd top-k must be ≥ 0, got %d", o.KDTopK)
	}
	return nil
}

func (o Options) schedule(total int) Schedule {
	kind := o.Schedule
	if kind == "" {
		kind = "constant"
	}
	return Schedule{Kind: kind, LR: o.LR, Warmup: o.Warmup, MinLR: o.MinLR, Total: total}
}

func (o Options) optimizer() Optimizer {
	if o.Optimizer == "sgd" {
		return &SGD{WeightDecay: o.WeightDecay}
	}
	return NewAdamW(o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
}
