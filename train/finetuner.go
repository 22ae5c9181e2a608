package train

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// FineTuner fine-tunes models in memory with one optimizer step per
// sequence (batch = one sequence), as the reference's training-aware
// selection does for every candidate. One FineTuner serves many models of
// any widths in turn: its gradient and optimizer buffers are flat arenas
// that only grow, so fine-tuning candidate after candidate allocates no new
// gradient or moment storage once the widest has been seen. Each Train call
// starts a fresh optimizer (zero moments, step counter 0), so the result of
// a call does not depend on what the FineTuner did before.
//
// A FineTuner is not safe for concurrent use; to fine-tune candidates in
// parallel, use a Pool, or give each goroutine its own FineTuner with a
// single-worker backend (cpu.(*CPU).WithWorkers(1)). With a single-worker
// backend, Train also keeps package nn's element-wise ops on the calling
// goroutine (nn.SerialScope, process-wide while it runs).
type FineTuner struct {
	be   backend.Backend
	opts Options
	err  error

	workers          int       // goroutines for the element-wise work (the backend's)
	gbuf, mbuf, vbuf []float32 // arenas: gradients, AdamW moments
	dlogits          []float32
	graph            Graph[float32]
	adam             AdamW
	sgd              SGD

	// onStep, when set (tests), sees the parameters and gradients of each
	// step just before the optimizer update.
	onStep func(step int, params, grads []Tensor[float32])
}

// FineTuneStats summarises one Train call.
type FineTuneStats struct {
	Steps     int     // optimizer steps (= sequences)
	Tokens    int     // tokens seen
	MeanLoss  float64 // mean of the per-step losses
	FirstLoss float64 // loss of the first step (before any update)
	LastLoss  float64 // loss of the last step (before its update)
}

// NewFineTuner returns a fine-tuner with the given options (e.g.
// SelectionPreset()). Invalid options are reported by every Train call,
// before any work.
func NewFineTuner(be backend.Backend, opts Options) *FineTuner {
	if opts.Schedule == "" {
		opts.Schedule = "constant"
	}
	f := &FineTuner{be: be, opts: opts, err: opts.Validate(), workers: backendWorkers(be)}
	f.graph.Be = be
	f.graph.SaveProbs = opts.SaveProbs
	return f
}

// Options returns the fine-tuner's options.
func (f *FineTuner) Options() Options { return f.opts }

// Train fine-tunes m in place, one step per sequence of seqs, in order. The
// loss of a step is the Hugging Face causal-LM loss (mean next-token
// cross-entropy over the sequence's len−1 shifted positions). m's tensors
// are overwritten: pass a model whose tensors the caller owns (e.g. a
// Clone of a stitched model, not one aliasing the dense model). On error
// (bad input, checked first; a non-finite loss or gradient) m may have
// been partly trained.
func (f *FineTuner) Train(m *model.Model, seqs [][]int) (FineTuneStats, error) {
	if f.err == nil && f.opts.KDWeight > 0 {
		return FineTuneStats{}, fmt.Errorf("options: kd weight %g needs teacher logits: use TrainDistill", f.opts.KDWeight)
	}
	return f.train(m, seqs, nil)
}

// TrainDistill is Train with the loss (1−a)·CE + a·KL(teacher ‖ student),
// a = Options.KDWeight, against cached teacher logits (one entry per
// sequence, see CacheTeacher): over the full vocabulary where Full is set,
// over the teacher's top-k (the reference's sparse_kl) where TopK is set.
// The teacher is never run here.
func (f *FineTuner) TrainDistill(m *model.Model, seqs [][]int, teacher []TeacherLogits) (FineTuneStats, error) {
	if f.err != nil {
		return FineTuneStats{}, f.err
	}
	if len(teacher) != len(seqs) {
		return FineTuneStats{}, fmt.Errorf("distillation: %d teacher entries for %d sequences", len(teacher), len(seqs))
	}
	for i, t := range teacher {
		T := len(seqs[i])
		switch {
		case t.TopK != nil:
			if t.TopK.Rows != T || len(t.TopK.Idx) != T*t.TopK.K || len(t.TopK.Val) != T*t.TopK.K {
				return FineTuneStats{}, fmt.Errorf("distillation: sequence %d has %d tokens, its teacher top-k %d rows", i, T, t.TopK.Rows)
			}
			for _, v := range t.TopK.Idx {
				if v < 0 || int(v) >= m.Cfg.Vocab {
					return FineTuneStats{}, fmt.Errorf("distillation: sequence %d: teacher token index %d outside the vocabulary [0, %d)", i, v, m.Cfg.Vocab)
				}
			}
		case len(t.Full) != T*m.Cfg.Vocab:
			return FineTuneStats{}, fmt.Errorf("distillation: sequence %d: teacher logits have %d values, want %d×%d", i, len(t.Full), T, m.Cfg.Vocab)
		}
	}
	return f.train(m, seqs, teacher)
}

func (f *FineTuner) train(m *model.Model, seqs [][]int, teacher []TeacherLogits) (FineTuneStats, error) {
	var st FineTuneStats
	if f.err != nil {
		return st, f.err
	}
	if err := checkSeqs(m, seqs); err != nil {
		return st, err
	}
	if f.workers == 1 {
		// One worker asked for (e.g. one candidate per core): no per-op
		// fan-out in nn either (see nn.SerialScope).
		defer nn.SerialScope()()
	}
	w := FromModel(m)
	n := w.NumParams()
	g := carve(w, grow(&f.gbuf, n))
	params, grads := w.Tensors(), g.Tensors()
	var opt Optimizer
	if f.opts.Optimizer == "adamw" {
		mo, vo := grow(&f.mbuf, n), grow(&f.vbuf, n)
		clear(mo)
		clear(vo)
		f.adam = AdamW{Beta1: f.opts.Beta1, Beta2: f.opts.Beta2, Eps: f.opts.Eps, WeightDecay: f.opts.WeightDecay,
			m: split(params, mo), v: split(params, vo)}
		opt = &f.adam
	} else {
		f.sgd = SGD{WeightDecay: f.opts.WeightDecay}
		opt = &f.sgd
	}
	total := f.opts.Steps
	if total == 0 {
		total = len(seqs)
	}
	sched := f.opts.schedule(total)
	f.graph.W = w
	V := m.Cfg.Vocab
	a := 0.0
	if teacher != nil {
		a = f.opts.KDWeight
	}
	var sum float64
	for i, s := range seqs {
		batch := [][]int{s}
		logits := f.graph.Forward(batch)
		dl := grow(&f.dlogits, len(logits))
		loss := crossEntropyInto(f.be, f.workers, dl, logits, batch, V, 1-a)
		if teacher != nil {
			var kd float64
			if tk := teacher[i].TopK; tk != nil {
				kd = SparseKLCached(dl, logits, tk, batch, V, a)
			} else {
				kd = KL(dl, logits, teacher[i].Full, batch, V, a)
			}
			loss = (1-a)*loss + a*kd
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return st, fmt.Errorf("fine-tuning step %d: loss is %v", i+1, loss)
		}
		clear(f.gbuf[:n])
		f.graph.Backward(dl, g)
		// Without clipping the norm is not needed: AdamW's fused pass
		// flags non-finite gradients itself.
		fused := opt == &f.adam && f.opts.Clip <= 0
		if !fused {
			if gn := ClipGrads(grads, f.opts.Clip); math.IsNaN(gn) || math.IsInf(gn, 0) {
				return st, fmt.Errorf("fine-tuning step %d: gradient norm is %v", i+1, gn)
			}
		}
		if f.onStep != nil {
			f.onStep(i+1, params, grads)
		}
		if fused {
			if !f.adam.step(params, grads, sched.At(i)) {
				return st, fmt.Errorf("fine-tuning step %d: a gradient is not finite", i+1)
			}
		} else {
			opt.Step(params, grads, sched.At(i))
		}
		if i == 0 {
			st.FirstLoss = loss
		}
		st.LastLoss = loss
		sum += loss
		st.Steps++
		st.Tokens += len(s)
	}
	if st.Steps > 0 {
		st.MeanLoss = sum / float64(st.Steps)
	}
	f.graph.W = nil
	return st, nil
}

// checkSeqs rejects sequences the loss is undefined for (fewer than two
// tokens), token ids outside the vocabulary and sequences longer than the
// model's context.
func checkSeqs(m *model.Model, seqs [][]int) error {
	for i, s := range seqs {
		if len(s) < 2 {
			return fmt.Errorf("fine-tuning: sequence %d has %d tokens; at least 2 are needed for a next-token loss", i, len(s))
		}
		if m.Cfg.MaxSeq > 0 && len(s) > m.Cfg.MaxSeq {
			return fmt.Errorf("fine-tuning: sequence %d has %d tokens, more than the model's context of %d", i, len(s), m.Cfg.MaxSeq)
		}
		for j, t := range s {
			if t < 0 || t >= m.Cfg.Vocab {
				return fmt.Errorf("fine-tuning: sequence %d, position %d: token id %d outside the vocabulary [0, %d)", i, j, t, m.Cfg.Vocab)
			}
		}
	}
	return nil
}

// grow returns (*buf)[:n], reallocating only when the capacity is short.
func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	return (*buf)[:n]
}

// carve lays tensors of w's shapes out consecutively in buf (Tensors order;
// a tied head shares the embedding's slice).
func carve(w *Weights[float32], buf []float32) *Weights[float32] {
	off := 0
	return mapWeights(w, func(s []float32) []float32 {
		if s == nil {
			return nil
		}
		if len(s) == 0 {
			return s[:0:0]
		}
		o := buf[off : off+len(s) : off+len(s)]
		off += len(s)
		return o
	})
}

// split cuts buf into slices of the lengths of params.
func split(params []Tensor[float32], buf []float32) [][]float32 {
	out := make([][]float32, len(params))
	off := 0
	for i, p := range params {
		out[i] = buf[off : off+len(p.Data) : off+len(p.Data)]
		off += len(p.Data)
	}
	return out
}
