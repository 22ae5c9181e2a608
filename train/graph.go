package train

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// LayerActs are the activations of one layer saved by the train-mode
// forward pass for its backward pass (model.LayerActs).
type LayerActs[F nn.Float] = model.LayerActs[F]

// Graph runs a model in train mode on a batch of sequences and
// back-propagates, on a backend.Device: weights resident, activations in an
// arena of device buffers reused from step to step.
//
// Two ways to use it: on host tensors (NewGraph; Forward returns host
// logits and Backward takes host gradients: the CPU device of Be, no
// copies), or on a device (NewDeviceGraph with resident weights;
// ForwardView / BackwardView on views, nothing crossing the bus but token
// ids and losses).
type Graph[F nn.Float] struct {
	W  *Weights[F]
	Be backend.Backend
	// SaveProbs keeps the attention probabilities [heads × T × T] of every
	// layer; otherwise (the default) the backward pass recomputes them
	// bitwise, which costs one more QKᵀ but bounds memory to O(T·width).
	SaveProbs bool
	// Sink, when set, receives every layer's o_proj and down_proj inputs
	// (float32 copies for other element types).
	Sink model.ActivationSink

	dev  backend.Device[F]
	res  *model.ResidentOf[F] // the weights on dev
	resW *Weights[F]          // the host weights res was made from (NewGraph)
	ar   *model.Arena[F]

	seqLens []int
	ids     []int
	rows    int
	acts    []model.DeviceActs
	xFinal  backend.View // residual stream before the final norm
	rstdF   backend.View
	xnF     backend.View // final-normed hidden states
	logits  backend.View
	hostOut []F // Forward's logits on a device without host views
}

// NewGraph returns a graph for the host weights w, run on the CPU device of
// be (nn.NewHost: the weights and activations are host slices).
func NewGraph[F nn.Float](be backend.Backend, w *Weights[F]) *Graph[F] {
	return &Graph[F]{W: w, Be: be}
}

// NewDeviceGraph returns a graph for weights resident on r.Dev.
func NewDeviceGraph[F nn.Float](r *model.ResidentOf[F]) *Graph[F] {
	return &Graph[F]{dev: r.Dev, res: r, ar: model.NewArena(r.Dev)}
}

// SetResident switches the graph to other resident weights on its device
// (e.g. the next candidate of a FineTuner); the arena is kept.
func (g *Graph[F]) SetResident(r *model.ResidentOf[F]) {
	if g.dev != r.Dev || g.ar == nil {
		if g.ar != nil {
			g.ar.Free()
		}
		g.ar = model.NewArena(r.Dev)
	}
	g.dev, g.res, g.resW = r.Dev, r, nil
}

// Device is the device the graph runs on (nil before the first Forward of
// a NewGraph graph).
func (g *Graph[F]) Device() backend.Device[F] { return g.dev }

// Arena is the graph's buffer arena: reset by every Forward; buffers taken
// after a Forward (e.g. the gradient of the logits) live until the next.
func (g *Graph[F]) Arena() *model.Arena[F] { return g.ar }

// Free releases the graph's activation buffers.
func (g *Graph[F]) Free() {
	if g.ar != nil {
		g.ar.Free()
	}
}

// hostWeights makes W resident on the host device of Be (NewGraph): at
// every Forward, since the caller may have replaced W or its tensors (on a
// host device this only wraps the slices).
func (g *Graph[F]) hostWeights() {
	if g.dev == nil {
		g.dev = nn.NewHost[F](g.Be)
		g.ar = model.NewArena(g.dev)
	}
	w := g.W
	g.res = must(model.UploadWeights(g.dev, w.Cfg, w.Embed, w.Norm, w.LMHead, w.Layers, w.Rope))
	g.resW = w
}

// must is for host-device operations, which cannot fail for valid shapes.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Forward runs the model on seqs (each from position 0, attending causally to
// itself) and returns the logits [Σlen × Vocab]. For float32 the logits are
// bitwise those of model.Forward. The logits are valid until the next
// Forward (the buffer is reused). A device error panics (on the CPU only
// token ids out of range, which panicked before the device interface too);
// ForwardView returns it.
func (g *Graph[F]) Forward(seqs [][]int) []F {
	if g.resW != nil || g.res == nil {
		g.hostWeights()
	}
	z := must(g.ForwardView(seqs))
	if s, ok := g.dev.Host(z); ok {
		return must(s, g.dev.Sync())
	}
	if cap(g.hostOut) < z.N {
		g.hostOut = make([]F, z.N)
	}
	g.hostOut = g.hostOut[:z.N]
	return must(g.hostOut, g.dev.Download(g.hostOut, z))
}

// ForwardView is Forward on the device: the logits are a view of the
// graph's arena, valid until the next Forward. Token ids must be in range
// (the device reports them otherwise).
func (g *Graph[F]) ForwardView(seqs [][]int) (backend.View, error) {
	r, dev, ar := g.res, g.dev, g.ar
	c := r.Cfg
	H := c.Hidden
	ar.Reset()
	g.seqLens, g.ids, g.rows = g.seqLens[:0], g.ids[:0], 0
	maxLen := 0
	for _, s := range seqs {
		g.seqLens = append(g.seqLens, len(s))
		g.ids = append(g.ids, s...)
		maxLen = max(maxLen, len(s))
	}
	g.rows = len(g.ids)
	rope := r.Rope(maxLen)
	x := ar.Take(g.rows * H)
	dev.Embed(x, r.Embed, g.ids, H)
	if cap(g.acts) < len(r.Layers) {
		g.acts = make([]model.DeviceActs, len(r.Layers))
	}
	g.acts = g.acts[:len(r.Layers)]
	sink := model.HostSink[F](g.Sink)
	for li := range r.Layers {
		g.acts[li] = model.DeviceActs{}
		model.LayerForwardDevice(dev, ar, rope, c, li, &r.Layers[li], x, g.seqLens, &g.acts[li], g.SaveProbs, sink)
	}
	g.xFinal = x
	g.rstdF = ar.Take(g.rows)
	g.xnF = ar.Take(g.rows * H)
	dev.RMSNorm(g.xnF, g.rstdF, x, r.Norm, g.rows, H, c.RMSEps)
	g.logits = ar.Take(g.rows * c.Vocab)
	dev.MatNT(g.logits, g.xnF, r.LMHead, g.rows, c.Vocab, H, false)
	if err := ar.Err(); err != nil {
		return backend.View{}, err
	}
	return g.logits, nil
}

// Rows is the number of token rows of the last Forward.
func (g *Graph[F]) Rows() int { return g.rows }

// Backward back-propagates dlogits [rows × Vocab] (the gradient of the loss
// with respect to the logits of the last Forward) and accumulates the
// parameter gradients into grads (which must have the shapes of W, e.g.
// ZeroLike(W)).
func (g *Graph[F]) Backward(dlogits []F, grads *Weights[F]) {
	gr := must(model.UploadWeights(g.dev, grads.Cfg, grads.Embed, grads.Norm, grads.LMHead, grads.Layers, nil))
	dl := must(g.dev.Resident(dlogits))
	g.BackwardView(dl, gr)
	if err := model.WriteBack(gr, grads.Embed, grads.Norm, grads.LMHead, grads.Layers); err != nil {
		panic(err)
	}
	gr.Release()
}

// BackwardView is Backward on the device: dlogits is a view on the graph's
// device and the parameter gradients are accumulated into grads (views of
// the weights' shapes; a tied head shares the embedding's).
func (g *Graph[F]) BackwardView(dlogits backend.View, grads *model.ResidentOf[F]) {
	r, dev, ar := g.res, g.dev, g.ar
	c := r.Cfg
	H, rows := c.Hidden, g.rows
	dev.MatTN(grads.LMHead, dlogits, g.xnF, c.Vocab, H, rows, true)
	mark := ar.Mark()
	dxn := ar.Take(rows * H)
	dev.MatNN(dxn, dlogits, r.LMHead, rows, H, c.Vocab, false)
	dx := ar.Take(rows * H)
	dev.Zero(dx)
	dev.RMSNormBackward(dx, grads.Norm, dxn, g.xFinal, r.Norm, g.rstdF, rows, H)
	maxLen := 0
	for _, T := range g.seqLens {
		maxLen = max(maxLen, T)
	}
	rope := r.Rope(maxLen)
	for li := len(r.Layers) - 1; li >= 0; li-- {
		LayerBackwardDevice(dev, ar, rope, c.HeadDim, &r.Layers[li], &grads.Layers[li], dx, g.seqLens, &g.acts[li])
	}
	dev.EmbedBackward(grads.Embed, dx, g.ids, H)
	ar.Release(mark)
}

// LayerForward applies decoder layer l to the residual stream x [rows ×
// hidden] in place and saves its activations in a: model.LayerForward, the
// one layer forward inference runs too. seqLens are the lengths of the
// packed sequences.
func LayerForward[F nn.Float](be backend.Backend, rope *nn.Rope, d int, eps float64, l *LayerW[F], x []F, seqLens []int, a *LayerActs[F], saveProbs bool) {
	model.LayerForward(be, rope, model.Config{HeadDim: d, RMSEps: eps}, 0, l, x, seqLens, a, saveProbs, nil)
}

// LayerBackward back-propagates layer l on host slices (the CPU device of
// be; see LayerBackwardDevice). On entry dx holds the gradient with respect
// to the layer's output; on return, with respect to its input. The
// parameter gradients are accumulated into gl.
func LayerBackward[F nn.Float](be backend.Backend, rope *nn.Rope, d int, l, gl *LayerW[F], dx []F, seqLens []int, a *LayerActs[F]) {
	dev := nn.NewHost[F](be)
	var c model.Config
	lr := must(model.UploadWeights(dev, c, nil, nil, nil, []LayerW[F]{*l, *gl}, nil))
	da := model.DeviceActsOf(dev, a)
	LayerBackwardDevice(dev, model.NewArena(dev), rope, d, &lr.Layers[0], &lr.Layers[1], must(dev.Resident(dx)), seqLens, &da)
}

// LayerBackwardDevice back-propagates layer l on dev. On entry dx holds the
// gradient with respect to the layer's output; on return, with respect to
// its input. The parameter gradients are accumulated into gl; a holds the
// activations the forward pass saved. Temporaries come from ar (returned
// on exit).
func LayerBackwardDevice[F nn.Float](dev backend.Device[F], ar *model.Arena[F], rope *nn.Rope, d int, l, gl *model.DeviceLayer, dx backend.View, seqLens []int, a *model.DeviceActs) {
	rows := 0
	for _, T := range seqLens {
		rows += T
	}
	if rows == 0 {
		return
	}
	H := dx.N / rows
	defer ar.Release(ar.Mark())
	take := ar.Take
	qd, kvd := l.Heads*d, l.KVHeads*d
	dxn := take(rows * H)
	if l.Inter > 0 {
		I := l.Inter
		dev.AddBiasBackward(gl.Bdown, dx, rows)
		dev.MatTN(gl.Wdown, dx, a.H, H, I, rows, true)
		dh := take(rows * I)
		dev.MatNN(dh, dx, l.Wdown, rows, I, H, false)
		dg, du := take(rows*I), take(rows*I)
		dev.SwiGLUBackward(dg, du, dh, a.G, a.U)
		dev.AddBiasBackward(gl.Bgate, dg, rows)
		dev.AddBiasBackward(gl.Bup, du, rows)
		dev.MatTN(gl.Wgate, dg, a.Xn2, I, H, rows, true)
		dev.MatTN(gl.Wup, du, a.Xn2, I, H, rows, true)
		dev.MatNN(dxn, dg, l.Wgate, rows, H, I, false)
		dev.MatNN(dxn, du, l.Wup, rows, H, I, true)
		dev.RMSNormBackward(dx, gl.MLPNorm, dxn, a.X1, l.MLPNorm, a.Rstd2, rows, H)
	}
	if l.Heads > 0 {
		dev.AddBiasBackward(gl.Bo, dx, rows)
		dev.MatTN(gl.Wo, dx, a.Att, H, qd, rows, true)
		datt := take(rows * qd)
		dev.MatNN(datt, dx, l.Wo, rows, qd, H, false)
		dq, dk, dv := take(rows*qd), take(rows*kvd), take(rows*kvd)
		seqs := make([]backend.AttnSeq, 0, len(seqLens))
		rs := make([]backend.Seq, 0, len(seqLens))
		r0 := 0
		for si, T := range seqLens {
			s := backend.AttnSeq{Seq: backend.Seq{Row: r0, T: T}}
			if a.Probs != nil {
				s.Probs = a.Probs[si]
			}
			r0 += T
			if T == 0 {
				continue
			}
			seqs = append(seqs, s)
			rs = append(rs, s.Seq)
		}
		dev.AttentionBackward(dq, dk, dv, datt, a.Q, a.K, a.V, seqs, backend.Heads{NH: l.Heads, NKV: l.KVHeads, D: d, KVMap: l.KVMap})
		dev.Rope(dq, rope, rs, l.Heads, true)
		dev.Rope(dk, rope, rs, l.KVHeads, true)
		dev.AddBiasBackward(gl.Bq, dq, rows)
		dev.AddBiasBackward(gl.Bk, dk, rows)
		dev.AddBiasBackward(gl.Bv, dv, rows)
		dev.MatTN(gl.Wq, dq, a.Xn1, qd, H, rows, true)
		dev.MatTN(gl.Wk, dk, a.Xn1, kvd, H, rows, true)
		dev.MatTN(gl.Wv, dv, a.Xn1, kvd, H, rows, true)
		dev.MatNN(dxn, dq, l.Wq, rows, H, qd, false)
		dev.MatNN(dxn, dk, l.Wk, rows, H, kvd, true)
		dev.MatNN(dxn, dv, l.Wv, rows, H, kvd, true)
		dev.RMSNormBackward(dx, gl.AttnNorm, dxn, a.X0, l.AttnNorm, a.Rstd1, rows, H)
	}
}
