package train

import (
	"errors"
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
// Training runs on the backend's device (nn.DeviceFor): the model's weights
// are made resident (on the CPU the views are the model's own slices), the
// gradient and moment arenas live on the device, the losses, gradient
// clipping and the optimizer (AdamW or SGD) are device operations, and only
// token ids, losses and (with clipping or SGD) the gradient norm cross the
// bus; Train writes the weights back to the model at the end (nothing to
// copy on the CPU). TrainResident trains weights the caller keeps resident.
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

	workers int // goroutines for the element-wise work (the backend's)
	dev     backend.Device[float32]
	// Arenas on dev: gradients and AdamW moments, grown to the largest
	// model seen and carved per model. gbuf, mbuf and vbuf are their host
	// slices on a host device (nil otherwise).
	gview, mview, vview backend.View
	gbuf, mbuf, vbuf    []float32
	graph               *Graph[float32]
	names               []string // the current model's tensor names (onStep)
	adam                AdamW
	sgd                 SGD

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
	return &FineTuner{be: be, opts: opts, err: opts.Validate(), workers: nn.BackendWorkers(be), dev: nn.DeviceFor(be)}
}

// Device is the device the fine-tuner trains on (nn.DeviceFor of its
// backend); TrainResident takes weights resident there.
func (f *FineTuner) Device() backend.Device[float32] { return f.dev }

// Close releases the fine-tuner's device buffers (gradient and moment
// arenas, activations); it may be used again afterwards (they are
// reallocated).
func (f *FineTuner) Close() {
	for _, v := range []*backend.View{&f.gview, &f.mview, &f.vview} {
		if !v.Nil() {
			f.dev.Free(*v)
		}
		*v = backend.View{}
	}
	f.gbuf, f.mbuf, f.vbuf = nil, nil, nil
	if f.graph != nil {
		f.graph.Free()
	}
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
	return f.trainModel(m, seqs, nil)
}

// TrainResident is Train on weights already resident on f.Device() (e.g.
// a candidate uploaded once for fine-tuning and then its fitness): r is
// updated in place on the device and nothing is written back.
func (f *FineTuner) TrainResident(r *model.Resident, seqs [][]int) (FineTuneStats, error) {
	if f.err == nil && f.opts.KDWeight > 0 {
		return FineTuneStats{}, fmt.Errorf("options: kd weight %g needs teacher logits: use TrainDistill", f.opts.KDWeight)
	}
	return f.train(r, seqs, nil)
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
	return f.trainModel(m, seqs, teacher)
}

// trainModel makes m resident on f's device, trains it and writes it back
// (nothing to copy on a host device, where the views are m's slices).
func (f *FineTuner) trainModel(m *model.Model, seqs [][]int, teacher []TeacherLogits) (FineTuneStats, error) {
	if f.err != nil {
		return FineTuneStats{}, f.err
	}
	if err := checkSeqs(m.Cfg, seqs); err != nil {
		return FineTuneStats{}, err
	}
	r, err := m.Upload(f.dev)
	if err != nil {
		return FineTuneStats{}, err
	}
	defer r.Release()
	st, err := f.train(r, seqs, teacher)
	if werr := m.WriteBack(r); err == nil {
		err = werr
	}
	return st, err
}

// train fine-tunes r in place.
func (f *FineTuner) train(r *model.Resident, seqs [][]int, teacher []TeacherLogits) (FineTuneStats, error) {
	var st FineTuneStats
	if f.err != nil {
		return st, f.err
	}
	if r.Dev != f.dev {
		return st, fmt.Errorf("fine-tuning: the weights are resident on %s, the fine-tuner runs on %s", r.Dev.Name(), f.dev.Name())
	}
	if err := checkSeqs(r.Cfg, seqs); err != nil {
		return st, err
	}
	if f.workers == 1 {
		// One worker asked for (e.g. one candidate per core): no per-op
		// fan-out in nn either (see nn.SerialScope).
		defer nn.SerialScope()()
	}
	dev := f.dev
	params, names := namedResident(r)
	f.names = names
	n := 0
	for _, p := range params {
		n += p.N
	}
	gv, err := f.growArena(&f.gview, &f.gbuf, n)
	if err != nil {
		return st, err
	}
	g := carveResident(r, gv)
	grads := residentTensors(g)
	var mo, vo []backend.View
	if f.opts.Optimizer == "adamw" {
		mv, err := f.growArena(&f.mview, &f.mbuf, n)
		if err != nil {
			return st, err
		}
		vv, err := f.growArena(&f.vview, &f.vbuf, n)
		if err != nil {
			return st, err
		}
		dev.Zero(mv)
		dev.Zero(vv)
		mo, vo = splitView(params, mv), splitView(params, vv)
		f.adam = AdamW{Beta1: f.opts.Beta1, Beta2: f.opts.Beta2, Eps: f.opts.Eps, WeightDecay: f.opts.WeightDecay}
	} else {
		f.sgd = SGD{WeightDecay: f.opts.WeightDecay}
	}
	total := f.opts.Steps
	if total == 0 {
		total = len(seqs)
	}
	sched := f.opts.schedule(total)
	if f.graph == nil {
		f.graph = NewDeviceGraph(r)
		f.graph.SaveProbs = f.opts.SaveProbs
	}
	f.graph.SetResident(r)
	V := r.Cfg.Vocab
	a := 0.0
	if teacher != nil {
		a = f.opts.KDWeight
	}
	var sum float64
	var prev FineTuneStats // st before the last step (a deferred error)
	for i, s := range seqs {
		batch := [][]int{s}
		logits, err := f.graph.ForwardView(batch)
		if err != nil {
			return st, fmt.Errorf("fine-tuning step %d: %w", i+1, err)
		}
		dl := f.graph.Arena().Take(logits.N)
		if err := f.graph.Arena().Err(); err != nil {
			return st, fmt.Errorf("fine-tuning step %d: %w", i+1, err)
		}
		tg := rowTargets(batch)
		loss, err := dev.CrossEntropy(dl, logits, tg, V, 1-a)
		if err == nil && teacher != nil {
			var kd float64
			if tk := teacher[i].TopK; tk != nil {
				kd, err = dev.SparseKL(dl, logits, tk.Idx, tk.Val, tk.K, tg, V, a)
			} else {
				kd, err = f.fullKL(dl, logits, teacher[i].Full, tg, V, a)
			}
			loss = (1-a)*loss + a*kd
		}
		if errors.Is(err, backend.ErrNonFinite) && i > 0 {
			// The previous step's AdamW met a non-finite gradient (its
			// flag is read here, with the loss, instead of a sync per step).
			return prev, fmt.Errorf("fine-tuning step %d: a gradient is not finite", i)
		} else if err != nil {
			return st, fmt.Errorf("fine-tuning step %d: %w", i+1, err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return st, fmt.Errorf("fine-tuning step %d: loss is %v", i+1, loss)
		}
		dev.Zero(gv)
		if err := f.graph.BackwardView(dl, g); err != nil {
			return st, fmt.Errorf("fine-tuning step %d: %w", i+1, err)
		}
		if err := f.step(i+1, sched.At(i), params, grads, mo, vo); err != nil {
			return st, err
		}
		prev = st
		if i == 0 {
			st.FirstLoss = loss
		}
		st.LastLoss = loss
		sum += loss
		st.Steps++
		st.Tokens += len(s)
	}
	if err := dev.Sync(); errors.Is(err, backend.ErrNonFinite) {
		return prev, fmt.Errorf("fine-tuning step %d: a gradient is not finite", len(seqs))
	} else if err != nil {
		return st, fmt.Errorf("fine-tuning: %w", err)
	}
	if st.Steps > 0 {
		st.MeanLoss = sum / float64(st.Steps)
	}
	return st, nil
}

// fullKL is the KL to full cached teacher logits (made resident for the
// call).
func (f *FineTuner) fullKL(dl, logits backend.View, teacher []float32, tg []int, V int, a float64) (float64, error) {
	tv, err := f.dev.Resident(teacher)
	if err != nil {
		return 0, err
	}
	if _, ok := f.dev.Host(tv); !ok {
		defer f.dev.Free(tv)
	}
	return f.dev.KL(dl, logits, tv, tg, V, a)
}

// step clips the gradients and updates the weights on the device. The
// global gradient norm is needed for clipping and for SGD's non-finite
// check (one round trip: SumSquares); AdamW without clipping flags
// non-finite gradients itself, and its flag is read with the next step's
// loss or the final sync (see train), so that step costs no round trip.
func (f *FineTuner) step(step int, lr float64, params, grads, mo, vo []backend.View) error {
	dev := f.dev
	adam := f.opts.Optimizer == "adamw"
	if !adam || f.opts.Clip > 0 {
		ss, err := dev.SumSquares(grads)
		if err != nil {
			return fmt.Errorf("fine-tuning step %d: %w", step, err)
		}
		gn := math.Sqrt(ss)
		if math.IsNaN(gn) || math.IsInf(gn, 0) {
			return fmt.Errorf("fine-tuning step %d: gradient norm is %v", step, gn)
		}
		if c, ok := clipCoef(gn, f.opts.Clip); ok {
			for _, g := range grads {
				dev.Scale(g, c)
			}
		}
	}
	if f.onStep != nil {
		if err := f.callOnStep(step, params, grads); err != nil {
			return err
		}
	}
	if adam {
		f.adam.t++
		c := f.adam.stepConsts(lr)
		for pi, p := range params {
			dev.AdamW(p, grads[pi], mo[pi], vo[pi], c)
		}
		return nil
	}
	f.sgd.t++
	for pi, p := range params {
		dev.SGD(p, grads[pi], lr, f.sgd.WeightDecay)
	}
	return nil
}

// callOnStep hands the step's parameters and gradients to the test hook as
// host tensors (the views' own slices on a host device, else downloaded
// copies).
func (f *FineTuner) callOnStep(step int, params, grads []backend.View) error {
	hp, err := hostCopies(f.dev, params, f.names)
	if err != nil {
		return err
	}
	hg, err := hostCopies(f.dev, grads, f.names)
	if err != nil {
		return err
	}
	f.onStep(step, hp, hg)
	return nil
}

func hostCopies(dev backend.Device[float32], views []backend.View, names []string) ([]Tensor[float32], error) {
	out := make([]Tensor[float32], len(views))
	for i, v := range views {
		out[i].Name = names[i]
		if s, ok := dev.Host(v); ok {
			out[i].Data = s
			continue
		}
		out[i].Data = make([]float32, v.N)
		if err := dev.Download(out[i].Data, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// growArena returns n elements of the device arena *v (regrown, zeroed,
// only when short), keeping *host pointed at its host slice.
func (f *FineTuner) growArena(v *backend.View, host *[]float32, n int) (backend.View, error) {
	if v.N < n {
		if !v.Nil() {
			f.dev.Free(*v)
		}
		nv, err := f.dev.Alloc(max(n, 1))
		if err != nil {
			*v, *host = backend.View{}, nil
			return backend.View{}, err
		}
		*v = nv
		*host, _ = f.dev.Host(nv)
	}
	return v.Slice(0, n), nil
}

// residentTensors lists r's tensors in Weights.Tensors order (empty ones
// and a tied head left out).
func residentTensors[F nn.Float](r *model.ResidentOf[F]) []backend.View {
	out, _ := namedResident(r)
	return out
}

// namedResident is residentTensors with the tensors' Hugging Face names.
func namedResident[F nn.Float](r *model.ResidentOf[F]) ([]backend.View, []string) {
	var out []backend.View
	var names []string
	model.EachNamed(r.Embed, r.Layers, r.Norm, r.LMHead, r.Cfg.Tied, func(name string, v backend.View) {
		if v.N > 0 {
			out = append(out, v)
			names = append(names, name)
		}
	})
	return out, names
}

// carveResident lays tensors of r's shapes out consecutively in buf
// (Tensors order; a tied head shares the embedding's view).
func carveResident[F nn.Float](r *model.ResidentOf[F], buf backend.View) *model.ResidentOf[F] {
	off := 0
	take := func(v backend.View) backend.View {
		if v.N == 0 {
			return backend.View{}
		}
		o := buf.Slice(off, v.N)
		off += v.N
		return o
	}
	g := &model.ResidentOf[F]{Dev: r.Dev, Cfg: r.Cfg, Layers: make([]model.DeviceLayer, len(r.Layers))}
	g.Embed = take(r.Embed)
	for i := range r.Layers {
		l := &r.Layers[i]
		gl := model.DeviceLayer{Heads: l.Heads, KVHeads: l.KVHeads, Inter: l.Inter, KVMap: l.KVMap}
		dst := gl.Tensors()
		for t, v := range l.Tensors() {
			*dst[t] = take(*v)
		}
		g.Layers[i] = gl
	}
	g.Norm = take(r.Norm)
	if r.Cfg.Tied {
		g.LMHead = g.Embed
	} else {
		g.LMHead = take(r.LMHead)
	}
	return g
}

// splitView cuts buf into views of the lengths of params.
func splitView(params []backend.View, buf backend.View) []backend.View {
	out := make([]backend.View, len(params))
	off := 0
	for i, p := range params {
		out[i] = buf.Slice(off, p.N)
		off += p.N
	}
	return out
}

// checkSeqs rejects sequences the loss is undefined for (fewer than two
// tokens), token ids outside the vocabulary and sequences longer than the
// model's context.
func checkSeqs(c model.Config, seqs [][]int) error {
	for i, s := range seqs {
		if len(s) < 2 {
			return fmt.Errorf("fine-tuning: sequence %d has %d tokens; at least 2 are needed for a next-token loss", i, len(s))
		}
		if c.MaxSeq > 0 && len(s) > c.MaxSeq {
			return fmt.Errorf("fine-tuning: sequence %d has %d tokens, more than the model's context of %d", i, len(s), c.MaxSeq)
		}
		for j, t := range s {
			if t < 0 || t >= c.Vocab {
				return fmt.Errorf("fine-tuning: sequence %d, position %d: token id %d outside the vocabulary [0, %d)", i, j, t, c.Vocab)
			}
		}
	}
	return nil
}
