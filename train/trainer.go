package train

import (
	"fmt"
	"math"
	"slices"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// Trainer trains a model in place. Its steps run on the backend's device
// with the weights, gradients and optimizer state resident there. On a GPU
// the model's tensors (W) are written back (downloaded) by the schedule's
// last step (Options.Steps; every step when it is 0 or has been passed), by
// Sync and by Close, and the optimizer state by Sync (SaveCheckpoint calls
// it); call Sync before using the model in the middle of a schedule.
type Trainer struct {
	Be      backend.Backend
	Model   *model.Model
	Teacher *model.Model // optional, for KD
	W, G    *Weights[float32]
	Opt     Optimizer
	Sched   Schedule
	Opts    Options
	Step    int // completed steps

	// A step runs on dev (nn.DeviceFor(Be)): forward and backward passes,
	// losses, gradient norm, clipping and the optimizer update, with W, G
	// and the optimizer state resident (on the CPU: the host slices
	// themselves, so nothing is copied). On a GPU only the loss and the
	// gradient norm cross the bus per step; the host tensors (W, which are
	// the model's, and the optimizer's state) are brought up to date by
	// Sync (checkpoints), W also by the last step and Close, and uploaded
	// by Reload (LoadCheckpoint).
	dev           backend.Device[float32]
	res, gres     *model.Resident
	graph         *Graph[float32]
	params, grads []Tensor[float32]
	pv, gv        []backend.View // res and gres in Tensors order
	mom           *AdamW         // the optimizer whose moments are mv, vv
	mv, vv        []backend.View
	tres          *model.Resident       // Teacher's weights (nil without one)
	tresOf        *model.Model          // the teacher tres was made from
	tarena        *model.Arena[float32] // the teacher's activations and logits
	tbuf          []float32             // host copy of the teacher's logits (top-k on a GPU)
	copied        bool                  // dev keeps copies (a GPU): host tensors need Sync
	wStale        bool                  // W (host) is older than the device's
	mStale        bool                  // so is the optimizer's host state
	err           error                 // the device error behind a NaN loss
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
	var tres *model.Resident
	if teacher != nil {
		if tres, err = teacher.Upload(dev); err != nil {
			res.Release()
			gres.Release()
			return nil, fmt.Errorf("teacher: %w", err)
		}
	}
	t := &Trainer{Be: be, Model: m, Teacher: teacher, W: w, G: g, Opt: opt, Sched: sch, Opts: o,
		dev: dev, res: res, gres: gres, tres: tres, tresOf: teacher, graph: NewDeviceGraph(res), params: w.Tensors(), grads: g.Tensors(),
		pv: residentTensors(res), gv: residentTensors(gres)}
	t.graph.SaveProbs = o.SaveProbs
	for _, v := range t.pv {
		if _, ok := dev.Host(v); !ok {
			t.copied = true
		}
	}
	if len(t.pv) != len(t.params) || len(t.gv) != len(t.params) {
		t.Close()
		return nil, fmt.Errorf("trainer: %d resident tensors for %d parameters", len(t.pv), len(t.params))
	}
	return t, nil
}

// Close writes the trained weights back into the model unless the last
// step did (a download on a GPU) and releases the trainer's device buffers
// (weights, gradients, optimizer state, activations). The trainer must not
// be used afterwards.
func (t *Trainer) Close() error {
	err := t.writeBack()
	if err == nil {
		err = t.dev.Sync()
	}
	t.graph.Free()
	t.freeMoments()
	t.freeTeacher()
	t.res.Release()
	t.gres.Release()
	return err
}

// teacherLogits runs the teacher on the device (its weights uploaded once,
// on the CPU its own slices; again when Teacher was replaced after
// NewTrainer) and returns its logits as a device view valid until the next
// call.
func (t *Trainer) teacherLogits(seqs [][]int) (backend.View, error) {
	if t.tresOf != t.Teacher {
		t.tres.Release()
		var err error
		if t.tres, err = t.Teacher.Upload(t.dev); err != nil {
			t.tresOf = nil
			return backend.View{}, fmt.Errorf("teacher: %w", err)
		}
		t.tresOf = t.Teacher
	}
	if t.tarena == nil {
		t.tarena = model.NewArena(t.dev)
	}
	t.tarena.Reset()
	z, _, err := t.tres.ForwardView(t.tarena, seqs)
	if err != nil {
		return backend.View{}, fmt.Errorf("teacher: %w", err)
	}
	return z, nil
}

func (t *Trainer) freeTeacher() {
	if t.tarena != nil {
		t.tarena.Free()
	}
	t.tres.Release()
	t.tres, t.tresOf, t.tarena = nil, nil, nil
}

// Sync brings the host tensors up to date with the device after training
// steps: the weights (W, the model's tensors) and the optimizer state
// (Opt.State). On the CPU they are the device's own slices and nothing is
// copied. It returns a pending device error.
func (t *Trainer) Sync() error {
	if err := t.writeBack(); err != nil {
		return err
	}
	if t.mStale && t.mom != nil {
		for i := range t.mv {
			if err := t.dev.Download(t.mom.m[i], t.mv[i]); err != nil {
				return err
			}
			if err := t.dev.Download(t.mom.v[i], t.vv[i]); err != nil {
				return err
			}
		}
	}
	t.mStale = false
	return t.dev.Sync()
}

// writeBack downloads the weights into W (the model's tensors) when a step
// changed them on a GPU.
func (t *Trainer) writeBack() error {
	if !t.wStale {
		return nil
	}
	w := t.W
	if err := model.WriteBack(t.res, w.Embed, w.Norm, w.LMHead, w.Layers); err != nil {
		return err
	}
	t.wStale = false
	return nil
}

// Reload uploads the host tensors (W and the optimizer state) to the
// device after they changed on the host (LoadCheckpoint calls it); on the
// CPU they are the device's own slices and nothing is copied.
func (t *Trainer) Reload() error {
	w := t.W
	if err := model.Reload(t.res, w.Embed, w.Norm, w.LMHead, w.Layers); err != nil {
		return err
	}
	if t.mom != nil && t.copied {
		for i := range t.mv {
			if err := t.dev.Upload(t.mv[i], t.mom.m[i]); err != nil {
				return err
			}
			if err := t.dev.Upload(t.vv[i], t.mom.v[i]); err != nil {
				return err
			}
		}
	}
	t.wStale, t.mStale = false, false
	return nil
}

// moments returns o's moments resident on the device, made from its host
// state (the host slices themselves on the CPU; uploaded copies, e.g. of a
// loaded checkpoint's state, on a GPU).
func (t *Trainer) moments(o *AdamW) error {
	if t.mom == o {
		return nil
	}
	t.freeMoments()
	o.alloc(t.params)
	mv, vv := make([]backend.View, len(t.params)), make([]backend.View, len(t.params))
	var err error
	for i := range t.params {
		if mv[i], err = t.dev.Resident(o.m[i]); err == nil {
			vv[i], err = t.dev.Resident(o.v[i])
		}
		if err != nil {
			t.mv, t.vv = mv, vv
			t.mom = o
			t.freeMoments()
			return err
		}
	}
	t.mom, t.mv, t.vv = o, mv, vv
	return nil
}

func (t *Trainer) freeMoments() {
	if t.copied {
		for _, vs := range [][]backend.View{t.mv, t.vv} {
			for _, v := range vs {
				if !v.Nil() {
					t.dev.Free(v)
				}
			}
		}
	}
	t.mom, t.mv, t.vv = nil, nil, nil
}

// Params and Grads list the trained tensors (Weights.Tensors order) as host
// tensors: on a GPU, Params is current after Sync and Grads after Loss with
// backward (TrainStep leaves the gradients on the device).
func (t *Trainer) Params() []Tensor[float32] { return t.params }
func (t *Trainer) Grads() []Tensor[float32]  { return t.grads }

// Loss computes the training loss of a batch with the weights on the
// device and, when backward is set, the gradients (into t.G, which is
// cleared first; a download on a GPU). A device error (none on the CPU for
// valid token ids) gives a NaN loss; TrainStep reports the error.
func (t *Trainer) Loss(seqs [][]int, backward bool) (loss, ce, kd float64) {
	loss, ce, kd, t.err = t.loss(seqs, backward)
	if t.err == nil && backward {
		g := t.G
		t.err = model.WriteBack(t.gres, g.Embed, g.Norm, g.LMHead, g.Layers)
	}
	if t.err != nil {
		loss = math.NaN()
	}
	return loss, ce, kd
}

// loss is Loss leaving the gradients on the device.
func (t *Trainer) loss(seqs [][]int, backward bool) (loss, ce, kd float64, err error) {
	V := t.Model.Cfg.Vocab
	dev := t.dev
	logits, err := t.graph.ForwardView(seqs)
	if err != nil {
		return 0, 0, 0, err
	}
	dl := t.graph.Arena().Take(logits.N)
	if err := t.graph.Arena().Err(); err != nil {
		return 0, 0, 0, err
	}
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
		var tz backend.View
		if tz, err = t.teacherLogits(seqs); err != nil {
			return 0, 0, 0, err
		}
		if t.Opts.KDTopK > 0 {
			// The top-k selection runs on the host: the teacher's logits
			// are downloaded (no copy on the CPU).
			tl, ok := dev.Host(tz)
			if !ok {
				t.tbuf = slices.Grow(t.tbuf[:0], tz.N)[:tz.N]
				if err := dev.Download(t.tbuf, tz); err != nil {
					return 0, 0, 0, err
				}
				tl = t.tbuf
			}
			tk := NewTopKLogits(tl, len(tg), V, t.Opts.KDTopK)
			kd, err = dev.SparseKL(dl, logits, tk.Idx, tk.Val, tk.K, tg, V, a)
		} else {
			kd, err = dev.KL(dl, logits, tz, tg, V, a)
		}
		if err != nil {
			return 0, 0, 0, err
		}
		loss = (1-a)*ce + a*kd
	}
	if backward {
		for _, v := range t.gv {
			dev.Zero(v)
		}
		if err := t.graph.BackwardView(dl, t.gres); err != nil {
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
	var err error
	st.Loss, st.CE, st.KD, err = t.loss(seqs, true)
	if err == nil {
		var ss float64
		ss, err = t.dev.SumSquares(t.gv) // also reports the backward pass's errors
		st.GradNorm = math.Sqrt(ss)
	}
	if err != nil {
		st.Loss = math.NaN()
		return st, fmt.Errorf("step %d: %w; stopping (no checkpoint is written for this step)", st.Step, err)
	}
	if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
		return st, fmt.Errorf("step %d: loss is %v; stopping (no checkpoint is written for this step)", st.Step, st.Loss)
	}
	if math.IsNaN(st.GradNorm) || math.IsInf(st.GradNorm, 0) {
		return st, fmt.Errorf("step %d: gradient norm is %v; stopping (no checkpoint is written for this step)", st.Step, st.GradNorm)
	}
	if c, ok := clipCoef(st.GradNorm, t.Opts.Clip); ok {
		for _, g := range t.gv {
			t.dev.Scale(g, c)
		}
	}
	if err := t.optimize(st.LR); err != nil {
		return st, fmt.Errorf("step %d: %w; stopping (no checkpoint is written for this step)", st.Step, err)
	}
	if t.Opts.Steps <= 0 || st.Step >= t.Opts.Steps {
		// The schedule's end: the model gets its trained weights.
		if err := t.writeBack(); err != nil {
			return st, fmt.Errorf("step %d: %w; stopping (no checkpoint is written for this step)", st.Step, err)
		}
	}
	t.Step++
	return st, nil
}

// optimize runs the optimizer update on the device (AdamW and SGD; another
// Optimizer on host tensors, with a round trip), then syncs so that a
// device error is reported by the step that caused it.
func (t *Trainer) optimize(lr float64) error {
	dev := t.dev
	t.wStale = t.wStale || t.copied
	t.mStale = t.mStale || t.copied
	switch o := t.Opt.(type) {
	case *AdamW:
		if err := t.moments(o); err != nil {
			return err
		}
		o.t++
		c := o.stepConsts(lr)
		for i, p := range t.pv {
			dev.AdamW(p, t.gv[i], t.mv[i], t.vv[i], c)
		}
	case *SGD:
		o.t++
		for i, p := range t.pv {
			dev.SGD(p, t.gv[i], lr, o.WeightDecay)
		}
	default:
		g := t.G
		if err := model.WriteBack(t.gres, g.Embed, g.Norm, g.LMHead, g.Layers); err != nil {
			return err
		}
		if err := t.Sync(); err != nil {
			return err
		}
		t.Opt.Step(t.params, t.grads, lr)
		return t.Reload()
	}
	// The norm was finite, so AdamW cannot flag a non-finite gradient.
	return dev.Sync()
}

// FineTune trains m in place with one optimizer step per sequence (batch 1)
// and returns the mean training loss; see FineTuner, which reuses its
// buffers across calls.
func FineTune(be backend.Backend, m *model.Model, seqs [][]int, o Options) (float64, error) {
	st, err := NewFineTuner(be, o).Train(m, seqs)
	return st.MeanLoss, err
}
