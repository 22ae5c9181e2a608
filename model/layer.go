package model

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// ActKind names an activation a layer reports to an ActivationSink.
type ActKind int

const (
	// OProjInput is the attention output before o_proj [rows × Heads*HeadDim].
	OProjInput ActKind = iota
	// DownProjInput is the SwiGLU activation silu(gate)·up [rows × Inter].
	DownProjInput
)

func (k ActKind) String() string {
	if k == DownProjInput {
		return "down_proj input"
	}
	return "o_proj input"
}

// ActivationSink receives the inputs of a layer's o_proj and down_proj as the
// forward pass computes them (for Hessians of structured pruning). x is
// row-major [rows × cols], valid only during the call and must not be
// modified. Calls for one forward pass come in layer order, from one
// goroutine.
type ActivationSink interface {
	Activation(layer int, kind ActKind, x []float32, rows, cols int)
}

// DeviceSink receives the inputs of a layer's o_proj and down_proj as views
// of device buffers (for Hessians accumulated on the device, e.g. with
// Device.Syrk). x is [rows × cols], valid only during the call (its buffer
// is reused afterwards) and must not be modified. Calls for one forward pass
// come in layer order, from one goroutine.
type DeviceSink[F backend.Float] interface {
	DeviceActivation(dev backend.Device[F], layer int, kind ActKind, x backend.View, rows, cols int)
}

// HostSink adapts an ActivationSink to the device forward pass: it sees the
// host slice behind each activation (no copy on a host device, a download
// otherwise), converted to float32 for other element types. nil gives nil.
func HostSink[F nn.Float](s ActivationSink) DeviceSink[F] {
	if s == nil {
		return nil
	}
	return &hostSink[F]{s: s}
}

type hostSink[F nn.Float] struct {
	s   ActivationSink
	buf []F
}

func (h *hostSink[F]) DeviceActivation(dev backend.Device[F], layer int, kind ActKind, x backend.View, rows, cols int) {
	n := rows * cols
	xs, ok := dev.Host(x)
	if ok && len(xs) >= n {
		xs = xs[:n]
	} else {
		if cap(h.buf) < n {
			h.buf = make([]F, n)
		}
		xs = h.buf[:n]
		if dev.Download(xs, x) != nil {
			return // the device's error is returned by the forward pass
		}
	}
	x32, ok := any(xs).([]float32)
	if !ok {
		x32 = make([]float32, n)
		for i, v := range xs {
			x32[i] = float32(v)
		}
	}
	h.s.Activation(layer, kind, x32, rows, cols)
}

// LayerActsT are the activations of one layer saved by the train-mode
// forward pass for the backward pass, stored as T (host slices or device
// views).
type LayerActsT[T any] struct {
	X0, Rstd1, Xn1 T // layer input, attention-norm 1/rms and output
	Q, K, V        T // after bias and RoPE
	Att            T // attention output (before o_proj)
	Probs          []T
	X1, Rstd2, Xn2 T // residual after attention, MLP-norm 1/rms and output
	G, U, H        T // gate and up projections (after bias), silu(G)·U
}

// LayerActs are saved activations as host slices.
type LayerActs[F nn.Float] = LayerActsT[[]F]

// DeviceActs are saved activations as device views (buffers of the arena
// the forward pass ran with).
type DeviceActs = LayerActsT[backend.View]

// segPlan is where a segment sits in the batch: its first row, its first
// position, and the segments whose keys it attends to (root first, itself
// last).
type segPlan struct {
	row, pos int
	chain    []int
}

// batch is the row layout of one forward pass.
type batch struct {
	lens   []int
	plan   []segPlan
	rows   int
	maxPos int
}

// newBatch lays out segments (Parent −1 for independent sequences) whose
// roots start at position past.
func newBatch(segs []Segment, past int) *batch {
	b := &batch{lens: make([]int, len(segs)), plan: make([]segPlan, len(segs))}
	for i, s := range segs {
		p := segPlan{row: b.rows, pos: past, chain: []int{i}}
		if s.Parent >= 0 {
			pp := b.plan[s.Parent]
			p.pos = pp.pos + len(segs[s.Parent].Tokens)
			p.chain = append(append([]int(nil), pp.chain...), i)
		}
		b.plan[i], b.lens[i] = p, len(s.Tokens)
		b.rows += len(s.Tokens)
		b.maxPos = max(b.maxPos, p.pos+len(s.Tokens))
	}
	return b
}

// seqBatch lays out independent sequences of the given lengths from position 0.
func seqBatch(seqLens []int) *batch {
	b := &batch{lens: seqLens, plan: make([]segPlan, len(seqLens))}
	for i, T := range seqLens {
		b.plan[i] = segPlan{row: b.rows, chain: []int{i}}
		b.rows += T
		b.maxPos = max(b.maxPos, T)
	}
	return b
}

// layerPass is how one layer runs on a device: the batch, and optionally a
// KV cache (inference, one segment), saved activations (training,
// independent segments from position 0) and an activation sink.
// Activations are taken from the arena.
type layerPass[F nn.Float] struct {
	dev       backend.Device[F]
	ar        *Arena[F]
	rope      *nn.Rope
	d         int
	eps       float64
	li        int
	b         *batch
	cache     *KVCache
	acts      *DeviceActs
	saveProbs bool
	sink      DeviceSink[F]
}

// LayerForwardDevice applies decoder layer l (index li, as reported to
// sink) to the residual stream x [rows × Hidden] of packed independent
// sequences of the given lengths, each from position 0, in place on dev. It
// is the one layer forward of the project: inference (Model.Forward and
// friends), training and Hessian capture all run it, so their results agree
// bitwise. With a != nil it saves the activations the backward pass needs
// (and the attention probabilities when saveProbs) as buffers of ar, valid
// until ar is reset; otherwise its temporaries are returned to ar. sink
// (may be nil) receives the o_proj and down_proj inputs. c supplies HeadDim
// and RMSEps; rope must cover the longest sequence.
func LayerForwardDevice[F nn.Float](dev backend.Device[F], ar *Arena[F], rope *nn.Rope, c Config, li int, l *DeviceLayer, x backend.View, seqLens []int, a *DeviceActs, saveProbs bool, sink DeviceSink[F]) {
	p := &layerPass[F]{dev: dev, ar: ar, rope: rope, d: c.HeadDim, eps: c.RMSEps, li: li, b: seqBatch(seqLens), acts: a, saveProbs: saveProbs, sink: sink}
	p.run(l, x)
}

// LayerForward is LayerForwardDevice on host slices (the CPU device of be):
// x is updated in place and a receives the saved activations as slices.
func LayerForward[F nn.Float](be backend.Backend, rope *nn.Rope, c Config, li int, l *LayerOf[F], x []F, seqLens []int, a *LayerActs[F], saveProbs bool, sink ActivationSink) {
	dev := nn.NewHost[F](be)
	put := func(s []F) backend.View {
		if len(s) == 0 {
			return backend.View{}
		}
		v, _ := dev.Resident(s) // a host device aliases, it cannot fail
		return v
	}
	dl, _ := residentLayer(dev, l, put)
	var da *DeviceActs
	if a != nil {
		da = &DeviceActs{}
	}
	LayerForwardDevice(dev, NewArena(dev), rope, c, li, &dl, put(x), seqLens, da, saveProbs, HostSink[F](sink))
	if a != nil {
		*a = HostActs(dev, da)
	}
}

// HostActs returns the host slices behind saved activations on a host
// device (nil for views of another device).
func HostActs[F nn.Float](dev backend.Device[F], a *DeviceActs) LayerActs[F] {
	h := func(v backend.View) []F {
		if v.Nil() {
			return nil
		}
		s, _ := dev.Host(v)
		return s
	}
	o := LayerActs[F]{X0: h(a.X0), Rstd1: h(a.Rstd1), Xn1: h(a.Xn1), Q: h(a.Q), K: h(a.K), V: h(a.V), Att: h(a.Att),
		X1: h(a.X1), Rstd2: h(a.Rstd2), Xn2: h(a.Xn2), G: h(a.G), U: h(a.U), H: h(a.H)}
	if a.Probs != nil {
		o.Probs = make([][]F, len(a.Probs))
		for i, v := range a.Probs {
			o.Probs[i] = h(v)
		}
	}
	return o
}

// DeviceActsOf returns views of host activations on a host device (the
// inverse of HostActs).
func DeviceActsOf[F nn.Float](dev backend.Device[F], a *LayerActs[F]) DeviceActs {
	v := func(s []F) backend.View {
		if s == nil {
			return backend.View{}
		}
		r, _ := dev.Resident(s)
		return r
	}
	o := DeviceActs{X0: v(a.X0), Rstd1: v(a.Rstd1), Xn1: v(a.Xn1), Q: v(a.Q), K: v(a.K), V: v(a.V), Att: v(a.Att),
		X1: v(a.X1), Rstd2: v(a.Rstd2), Xn2: v(a.Xn2), G: v(a.G), U: v(a.U), H: v(a.H)}
	if a.Probs != nil {
		o.Probs = make([]backend.View, len(a.Probs))
		for i, s := range a.Probs {
			o.Probs[i] = v(s)
		}
	}
	return o
}

// emit hands an activation to the sink.
func (p *layerPass[F]) emit(kind ActKind, x backend.View, rows, cols int) {
	if p.sink != nil {
		p.sink.DeviceActivation(p.dev, p.li, kind, x, rows, cols)
	}
}

// run applies layer l to x [rows × H] in place.
func (p *layerPass[F]) run(l *DeviceLayer, x backend.View) {
	dev, ar, d, eps, b := p.dev, p.ar, p.d, p.eps, p.b
	rows := b.rows
	if rows == 0 {
		return
	}
	H := x.N / rows
	a := p.acts
	save := a != nil
	if save && (p.cache != nil || hasChains(b)) {
		panic("model: saved activations need independent sequences from position 0")
	}
	if !save {
		// Inference: the layer's temporaries go back to the arena for the
		// next layer.
		defer ar.Release(ar.Mark())
	}
	take := ar.Take
	if save {
		a.X0 = take(rows * H)
		dev.Copy(a.X0, x)
	}
	// Inference reuses one scratch buffer for the normed input and the
	// sublayer output; training keeps each.
	var scratch backend.View
	buf := func() backend.View {
		if save {
			return take(rows * H)
		}
		if scratch.Nil() {
			scratch = take(rows * H)
		}
		return scratch
	}
	rs := make([]backend.Seq, 0, len(b.plan))
	for si, sp := range b.plan {
		if b.lens[si] > 0 {
			rs = append(rs, backend.Seq{Row: sp.row, T: b.lens[si], Pos: sp.pos})
		}
	}
	var rstd backend.View
	if l.Heads > 0 {
		qd, kvd := l.Heads*d, l.KVHeads*d
		xn := buf()
		if save {
			rstd = take(rows)
		}
		dev.RMSNorm(xn, rstd, x, l.AttnNorm, rows, H, eps)
		q, k, v := take(rows*qd), take(rows*kvd), take(rows*kvd)
		dev.MatNT(q, xn, l.Wq, rows, qd, H, false)
		dev.MatNT(k, xn, l.Wk, rows, kvd, H, false)
		dev.MatNT(v, xn, l.Wv, rows, kvd, H, false)
		dev.AddBias(q, l.Bq, rows)
		dev.AddBias(k, l.Bk, rows)
		dev.AddBias(v, l.Bv, rows)
		// Rotate every segment's queries and keys first, so that children
		// can then read their ancestors' rotated keys.
		dev.Rope(q, p.rope, rs, l.Heads, false)
		dev.Rope(k, p.rope, rs, l.KVHeads, false)
		att := take(rows * qd)
		if save && p.saveProbs {
			a.Probs = make([]backend.View, len(b.plan))
		}
		seqs := make([]backend.AttnSeq, 0, len(b.plan))
		for si, sp := range b.plan {
			T := b.lens[si]
			if T == 0 {
				continue
			}
			s := backend.AttnSeq{Seq: backend.Seq{Row: sp.row, T: T, Pos: sp.pos}}
			switch {
			case p.cache != nil: // one segment (checked by the callers)
				kc, vc := growCache(p.cache, dev, p.li, kvd, sp.pos+T)
				dev.Copy(kc.Slice(sp.pos*kvd, T*kvd), k.Rows(sp.row, sp.row+T, kvd))
				dev.Copy(vc.Slice(sp.pos*kvd, T*kvd), v.Rows(sp.row, sp.row+T, kvd))
				s.K, s.V = []backend.View{kc.Slice(0, (sp.pos+T)*kvd)}, []backend.View{vc.Slice(0, (sp.pos+T)*kvd)}
			case len(sp.chain) > 1:
				for _, c := range sp.chain {
					pc, n := b.plan[c], b.lens[c]
					if n > 0 {
						s.K = append(s.K, k.Rows(pc.row, pc.row+n, kvd))
						s.V = append(s.V, v.Rows(pc.row, pc.row+n, kvd))
					}
				}
			}
			if save && p.saveProbs {
				s.Probs = take(l.Heads * T * T)
				a.Probs[si] = s.Probs
			}
			seqs = append(seqs, s)
		}
		dev.Attention(att, q, k, v, seqs, backend.Heads{NH: l.Heads, NKV: l.KVHeads, D: d, KVMap: l.KVMap})
		p.emit(OProjInput, att, rows, qd)
		y := buf()
		dev.MatNT(y, att, l.Wo, rows, H, qd, false)
		dev.AddBias(y, l.Bo, rows)
		dev.Add(x, y)
		if save {
			a.Rstd1, a.Xn1, a.Q, a.K, a.V, a.Att = rstd, xn, q, k, v, att
		}
	}
	if l.Inter > 0 {
		I := l.Inter
		rstd = backend.View{}
		if save {
			if l.Heads > 0 {
				a.X1 = take(rows * H)
				dev.Copy(a.X1, x)
			} else {
				a.X1 = a.X0
			}
			rstd = take(rows)
		}
		xn := buf()
		dev.RMSNorm(xn, rstd, x, l.MLPNorm, rows, H, eps)
		g, u := take(rows*I), take(rows*I)
		dev.MatNT(g, xn, l.Wgate, rows, I, H, false)
		dev.MatNT(u, xn, l.Wup, rows, I, H, false)
		dev.AddBias(g, l.Bgate, rows)
		dev.AddBias(u, l.Bup, rows)
		h := g // inference: silu(g)·u in place
		if save {
			h = take(rows * I)
		}
		dev.SiLUMul(h, g, u)
		p.emit(DownProjInput, h, rows, I)
		y := buf()
		dev.MatNT(y, h, l.Wdown, rows, H, I, false)
		dev.AddBias(y, l.Bdown, rows)
		dev.Add(x, y)
		if save {
			a.Rstd2, a.Xn2, a.G, a.U, a.H = rstd, xn, g, u, h
		}
	}
}

func hasChains(b *batch) bool {
	for _, p := range b.plan {
		if len(p.chain) > 1 {
			return true
		}
	}
	return false
}

// SeqLens returns the lengths of seqs.
func SeqLens(seqs [][]int) []int {
	lens := make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = len(s)
	}
	return lens
}

// EmbedSeqs returns the token embeddings of the packed sequences
// [Σlen × Hidden], the input of layer 0. Token ids must be in range.
func (m *Model) EmbedSeqs(seqs [][]int) []float32 {
	H := m.Cfg.Hidden
	rows := 0
	for _, s := range seqs {
		rows += len(s)
	}
	x := make([]float32, 0, rows*H)
	for _, s := range seqs {
		for _, id := range s {
			x = append(x, m.Embed[id*H:(id+1)*H]...)
		}
	}
	return x
}

// RunLayer applies layer li alone to the hidden states x [Σlen × Hidden] of
// packed independent sequences of the given lengths (each from position 0)
// in place, reporting its o_proj and down_proj inputs to sink (may be nil).
// EmbedSeqs followed by RunLayer for li = 0..L−1 and FinalNorm is exactly
// Hidden; running one layer at a time lets a caller keep one layer's
// activations in memory. It runs on be's device (nn.DeviceFor).
func (m *Model) RunLayer(be backend.Backend, li int, x []float32, seqLens []int, sink ActivationSink) error {
	if li < 0 || li >= len(m.Layers) {
		return fmt.Errorf("model: layer %d out of range [0, %d)", li, len(m.Layers))
	}
	dev := nn.DeviceFor(be)
	r, err := m.Upload(dev)
	if err != nil {
		return err
	}
	defer r.Release()
	xv, err := dev.Resident(x)
	if err != nil {
		return err
	}
	_, host := dev.Host(xv)
	if !host {
		defer dev.Free(xv)
	}
	ar := NewArena(dev)
	defer ar.Free()
	if err := r.RunLayer(ar, li, xv, seqLens, HostSink[float32](sink)); err != nil {
		return err
	}
	if !host {
		err = dev.Download(x, xv)
	}
	return err
}

// RunLayer is Model.RunLayer on resident weights: x is a view of the
// hidden states on r's device, updated in place; temporaries come from ar.
func (r *ResidentOf[F]) RunLayer(ar *Arena[F], li int, x backend.View, seqLens []int, sink DeviceSink[F]) error {
	if li < 0 || li >= len(r.Layers) {
		return fmt.Errorf("model: layer %d out of range [0, %d)", li, len(r.Layers))
	}
	b := seqBatch(seqLens)
	if x.N != b.rows*r.Cfg.Hidden {
		return fmt.Errorf("model: hidden states have %d values, want %d rows × %d", x.N, b.rows, r.Cfg.Hidden)
	}
	p := &layerPass[F]{dev: r.Dev, ar: ar, rope: r.Rope(b.maxPos), d: r.Cfg.HeadDim, eps: r.Cfg.RMSEps, li: li, b: b, sink: sink}
	p.run(&r.Layers[li], x)
	if err := ar.Err(); err != nil {
		return err
	}
	return r.Dev.Sync()
}

// FinalNorm applies the final RMSNorm to rows of hidden states in place.
func (m *Model) FinalNorm(x []float32, rows int) {
	nn.RMSNormForward(x, nil, x, m.Norm, rows, m.Cfg.Hidden, m.Cfg.RMSEps)
}
