package train

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
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

	// The forward and backward passes run on dev (nn.DeviceFor(Be)) with
	// W and G resident (on the CPU: the host slices themselves). The
	// optimizer runs on the host tensors: on a GPU the gradients are
	// downloaded after each backward pass and the weights uploaded before
	// each forward pass, so W, G and the optimizer state (checkpoints) are
	// always the host tensors.
	dev           backend.Device[float32]
	res, gres     *model.Resident
	graph         *Graph[float32]
	params, grads []Tensor[float32]
	err           error // the device error behind a NaN loss
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
	dev := nn.DeviceFor(be)
	res, err := model.UploadWeights(dev, w.Cfg, w.Embed, w.Norm, w.LMHead, w.Layers, w.Rope)
	if err != nil {
		return nil, err
	}
	gres, err := model.UploadWeights(dev, g.Cfg, g.Embed, g.Norm, g.LMHead, g.Layers, nil)
	if err != nil {
		res.Release()
		return nil, err
	}
	t := &Trainer{Be: be, Model: m, Teacher: teacher, W: w, G: g, Opt: opt, Sched: sch, Opts: o,
		dev: dev, res: res, gres: gres, graph: NewDeviceGraph(res), params: w.Tensors(), grads: g.Tensors()}
	t.graph.SaveProbs = o.SaveProbs
	return t, nil
}

// Close releases the trainer's device buffers (weights and gradients on a
// GPU, activations); the model keeps the trained weights.
func (t *Trainer) Close() {
	t.graph.Free()
	t.res.Release()
	t.gres.Release()
}

// Params and Grads list the trained tensors (Weights.Tensors order).
func (t *Trainer) Params() []Tensor[float32] { return t.params }
func (t *Trainer) Grads() []Tensor[float32]  { return t.grads }

// Loss computes the training loss of a batch and, when backward is set, the
// gradients (into t.G, which is cleared first). A device error (none on the
// CPU for valid token ids) gives a NaN loss; TrainStep reports the error.
func (t *Trainer) Loss(seqs [][]int, backward bool) (loss, ce, kd float64) {
	loss, ce, kd, t.err = t.loss(seqs, backward)
	if t.err != nil {
		loss = math.NaN()
	}
	return loss, ce, kd
}

func (t *Trainer) loss(seqs [][]int, backward bool) (loss, ce, kd float64, err error) {
	V := t.Model.Cfg.Vocab
	w, dev := t.W, t.dev
	if err := model.Reload(t.res, w.Embed, w.Norm, w.LMHead, w.Layers); err != nil {
		return 0, 0, 0, err
	}
	logits, err := t.graph.ForwardView(seqs)
	if err != nil {
		return 0, 0, 0, err
	}
	dl := t.graph.Arena().Take(logits.N)
	a := 0.0
	if t.Teacher != nil {
		a = t.Opts.KDWeight
	}
	tg := rowTargets(seqs)
	if ce, err = dev.CrossEntropy(dl, logits, tg, V, 1-a); err != nil {
		return 0, 0, 0, err
	}
	loss = ce
	if a > 0 {
		tl := t.Teacher.Forward(t.Be, seqs)
		if t.Opts.KDTopK > 0 {
			tk := NewTopKLogits(tl, len(tg), V, t.Opts.KDTopK)
			kd, err = dev.SparseKL(dl, logits, tk.Idx, tk.Val, tk.K, tg, V, a)
		} else {
			var tv backend.View
			if tv, err = dev.Resident(tl); err == nil {
				kd, err = dev.KL(dl, logits, tv, tg, V, a)
				if _, ok := dev.Host(tv); !ok {
					dev.Free(tv)
				}
			}
		}
		if err != nil {
			return 0, 0, 0, err
		}
		loss = (1-a)*ce + a*kd
	}
	if backward {
		for _, v := range residentTensors(t.gres) {
			dev.Zero(v)
		}
		t.graph.BackwardView(dl, t.gres)
		g := t.G
		if err := model.WriteBack(t.gres, g.Embed, g.Norm, g.LMHead, g.Layers); err != nil {
			return 0, 0, 0, err
		}
	}
	return loss, ce, kd, nil
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
	if t.err != nil {
		return st, fmt.Errorf("step %d: %w; stopping (no checkpoint is written for this step)", st.Step, t.err)
	}
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
