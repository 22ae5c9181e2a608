package train

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
)

// Trainer trains a model in place.
type Trainer struct {
	Be      backend.Backend
	Model   *model.Model
	Teacher *model.Model // optional, for KD
	W, G    *Weights[float32]
	Opt     Optimizer
	Sched   Schedule
	Opts    Options
	Step    int // completed steps

	graph         *Graph[float32]
	params, grads []Tensor[float32]
}

// StepStats describes one optimizer step.
type StepStats struct {
	Step     int     // 1-based index of the step just done
	Loss     float64 // total loss
	CE, KD   float64 // components (KD is 0 without a teacher)
	LR       float64
	GradNorm float64 // before clipping
	Tokens   int     // tokens in the batch
}

// NewTrainer prepares training of m (updated in place). teacher may be nil.
func NewTrainer(be backend.Backend, m, teacher *model.Model, o Options) (*Trainer, error) {
	if o.Schedule == "" {
		o.Schedule = "constant"
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sch := o.schedule(o.Steps)
	opt := o.optimizer()
	if teacher != nil && teacher.Cfg.Vocab != m.Cfg.Vocab {
		return nil, fmt.Errorf("teacher vocabulary %d differs from the student's %d", teacher.Cfg.Vocab, m.Cfg.Vocab)
	}
	if o.KDWeight > 0 && teacher == nil {
		return nil, fmt.Errorf("kd weight %g needs a teacher model", o.KDWeight)
	}
	w := FromModel(m)
	g := ZeroLike(w)
	t := &Trainer{Be: be, Model: m, Teacher: teacher, W: w, G: g, Opt: opt, Sched: sch, Opts: o,
		graph: NewGraph(be, w), params: w.Tensors(), grads: g.Tensors()}
	t.graph.SaveProbs = o.SaveProbs
	return t, nil
}

// Params and Grads list the trained tensors (Weights.Tensors order).
func (t *Trainer) Params() []Tensor[float32] { return t.params }
func (t *Trainer) Grads() []Tensor[float32]  { return t.grads }

// Loss computes the training loss of a batch and, when backward is set, the
// gradients (into t.G, which is cleared first).
func (t *Trainer) Loss(seqs [][]int, backward bool) (loss, ce, kd float64) {
	V := t.Model.Cfg.Vocab
	logits := t.graph.Forward(seqs)
	dl := make([]float32, len(logits))
	a := 0.0
	if t.Teacher != nil {
		a = t.Opts.KDWeight
	}
	ce = crossEntropyInto(t.Be, backendWorkers(t.Be), dl, logits, seqs, V, 1-a)
	loss = ce
	if a > 0 {
		tl := t.Teacher.Forward(t.Be, seqs)
		if t.Opts.KDTopK > 0 {
			kd = SparseKL(dl, logits, tl, seqs, V, t.Opts.KDTopK, a)
		} else {
			kd = KL(dl, logits, tl, seqs, V, a)
		}
		loss = (1-a)*ce + a*kd
	}
	if backward {
		t.G.Zero()
		t.graph.Backward(dl, t.G)
	}
	return loss, ce, kd
}

// TrainStep does one optimizer step on a batch. A non-finite loss or
// gradient norm stops with an error naming the step; the weights are then
// left untouched.
func (t *Trainer) TrainStep(seqs [][]int) (StepStats, error) {
	st := StepStats{Step: t.Step + 1, LR: t.Sched.At(t.Step)}
	for _, s := range seqs {
		st.Tokens += len(s)
	}
	st.Loss, st.CE, st.KD = t.Loss(seqs, true)
	if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
		return st, fmt.Errorf("step %d: loss is %v; stopping (no checkpoint is written for this step)", st.Step, st.Loss)
	}
	st.GradNorm = ClipGrads(t.grads, t.Opts.Clip)
	if math.IsNaN(st.GradNorm) || math.IsInf(st.GradNorm, 0) {
		return st, fmt.Errorf("step %d: gradient norm is %v; stopping (no checkpoint is written for this step)", st.Step, st.GradNorm)
	}
	t.Opt.Step(t.params, t.grads, st.LR)
	t.Step++
	return st, nil
}

// FineTune trains m in place with one optimizer step per sequence (batch 1)
// and returns the mean training loss; see FineTuner, which reuses its
// buffers across calls.
func FineTune(be backend.Backend, m *model.Model, seqs [][]int, o Options) (float64, error) {
	st, err := NewFineTuner(be, o).Train(m, seqs)
	return st.MeanLoss, err
}
