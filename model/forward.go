package model

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// rope returns the model's rotary tables, built once and grown to n positions.
func (m *Model) ropeFor(n int) *nn.Rope {
	m.ropeMu.Lock()
	defer m.ropeMu.Unlock()
	if m.rope == nil {
		c := m.Cfg
		var sc *nn.RopeScaling
		if c.RopeScaling != nil && c.RopeScaling.Type == "llama3" {
			sc = &nn.RopeScaling{Factor: c.RopeScaling.Factor, LowFreqFactor: c.RopeScaling.LowFreqFactor,
				HighFreqFactor: c.RopeScaling.HighFreqFactor, OriginalMaxPos: c.RopeScaling.OriginalMaxPositionEmbeddings}
		}
		theta := c.RopeTheta
		if theta == 0 {
			theta = 10000
		}
		m.rope = nn.NewRope(c.HeadDim, theta, c.Rope == RopeInterleaved, sc)
	}
	m.rope.Ensure(n)
	return m.rope
}

// Rope exposes the rotary tables (grown to n positions) to the training code.
func (m *Model) Rope(n int) *nn.Rope { return m.ropeFor(n) }

// KVCache holds the keys and values of past tokens of one sequence, per
// layer, for incremental decoding, in buffers on the device the model runs
// on (grown as tokens are added). A cache used through Model.Step keeps the
// model's weights resident on that device (uploaded at the first Step) until
// the cache is dropped.
type KVCache struct {
	Len  int
	k, v []backend.View // per layer, room for at least Len rows

	// Step's resident weights and the backend they were made for.
	be  backend.Backend
	m   *Model
	res *Resident
	// free releases a buffer of the device the cache lives on.
	free func(backend.View)
}

// NewCache returns an empty cache for m.
func (m *Model) NewCache() *KVCache {
	return &KVCache{k: make([]backend.View, len(m.Layers)), v: make([]backend.View, len(m.Layers))}
}

// Release frees the cache's device buffers and the weights Model.Step
// made resident for it (nothing to free on the CPU). The cache is empty
// afterwards.
func (c *KVCache) Release() {
	if c.free != nil {
		for _, v := range append(c.k, c.v...) {
			if !v.Nil() {
				c.free(v)
			}
		}
	}
	c.res.Release()
	clear(c.k)
	clear(c.v)
	c.Len, c.res, c.be, c.m, c.free = 0, nil, nil, nil, nil
}

// growCache makes room for n rows of width kvd in layer li's buffers of c
// (keeping the rows cached so far, doubling as a slice append does) and
// returns them.
func growCache[F nn.Float](c *KVCache, dev backend.Device[F], li, kvd, n int) (k, v backend.View) {
	if c.free == nil {
		c.free = dev.Free
	}
	for _, b := range []*[]backend.View{&c.k, &c.v} {
		old := (*b)[li]
		if old.N >= n*kvd {
			continue
		}
		nv, err := dev.Alloc(max(n, 2*old.N/max(kvd, 1)) * kvd)
		if err != nil {
			continue // the device reports it at the next use of the view
		}
		if !old.Nil() {
			dev.Copy(nv.Slice(0, c.Len*kvd), old.Slice(0, c.Len*kvd))
			dev.Free(old)
		}
		(*b)[li] = nv
	}
	return c.k[li], c.v[li]
}

// Forward runs the model on a batch of token sequences. Sequences may have
// different lengths; each starts at position 0 and attends causally to
// itself only. It returns logits [Σlen(seqs) × Vocab], rows in sequence order.
// It runs on be's device (nn.DeviceFor); token ids must be in range (an
// error of the device, only possible for bad ids on the CPU, panics: use
// Resident.Forward to get it as an error).
func (m *Model) Forward(be backend.Backend, seqs [][]int) []float32 {
	r := m.mustUpload(be)
	defer r.Release()
	return must(r.Forward(seqs))
}

func (m *Model) mustUpload(be backend.Backend) *Resident {
	return must(m.Upload(nn.DeviceFor(be)))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Logits applies the LM head to rows of final hidden states.
func (m *Model) Logits(be backend.Backend, hidden []float32, rows int) []float32 {
	r := m.mustUpload(be)
	defer r.Release()
	return must(r.Logits(hidden, rows))
}

// Step runs new tokens of one sequence through the model, appending their
// keys and values to cache, and returns the logits of the last token.
func (m *Model) Step(be backend.Backend, cache *KVCache, tokens []int) []float32 {
	if cache.res == nil || cache.be != be || cache.m != m {
		cache.res.Release()
		cache.res, cache.be, cache.m = m.mustUpload(be), be, m
	}
	return must(cache.res.Step(cache, tokens))
}

// Segment is a run of tokens in a batch. Independent sequences have Parent
// −1. A segment with Parent ≥ 0 continues segment Parent (which must come
// earlier in the batch): its positions follow the parent's chain and it
// attends to the chain's keys and values as well as its own. Many
// continuations of one context can so share one forward pass of the context,
// and every row gets exactly the computation of the unshared sequence.
type Segment struct {
	Tokens []int
	Parent int
}

// Hidden returns the final-normed hidden states [Σlen × Hidden] and the
// number of rows. With a cache (one sequence only), positions continue after
// the cached tokens and the cache is extended.
func (m *Model) Hidden(be backend.Backend, seqs [][]int, cache *KVCache) ([]float32, int) {
	if cache != nil && len(seqs) != 1 {
		panic("model: a KV cache serves exactly one sequence")
	}
	r := m.mustUpload(be)
	defer r.Release()
	x, rows, err := r.hiddenHost(seqSegments(seqs), cache, nil)
	return must(x, err), rows
}

func seqSegments(seqs [][]int) []Segment {
	segs := make([]Segment, len(seqs))
	for i, s := range seqs {
		segs[i] = Segment{Tokens: s, Parent: -1}
	}
	return segs
}

// HiddenSegments is Hidden for a batch of segments (see Segment). Row order
// is segment order.
func (m *Model) HiddenSegments(be backend.Backend, segs []Segment) ([]float32, int, error) {
	r, err := m.Upload(nn.DeviceFor(be))
	if err != nil {
		return nil, 0, err
	}
	defer r.Release()
	return r.HiddenSegments(segs)
}

// HiddenSink is Hidden (without a cache) with an activation sink that
// receives every layer's o_proj and down_proj inputs.
func (m *Model) HiddenSink(be backend.Backend, seqs [][]int, sink ActivationSink) ([]float32, int) {
	r := m.mustUpload(be)
	defer r.Release()
	x, rows, err := r.hiddenHost(seqSegments(seqs), nil, HostSink[float32](sink))
	return must(x, err), rows
}

// Forward is Model.Forward on resident weights.
func (r *ResidentOf[F]) Forward(seqs [][]int) ([]F, error) {
	ar := NewArena(r.Dev)
	defer ar.Free()
	x, rows, err := r.HiddenView(ar, seqSegments(seqs), nil, nil)
	if err != nil {
		return nil, err
	}
	defer r.Dev.Free(x)
	return r.logitsHost(ar, x, rows)
}

// Logits is Model.Logits on resident weights.
func (r *ResidentOf[F]) Logits(hidden []F, rows int) ([]F, error) {
	if len(hidden) < rows*r.Cfg.Hidden {
		return nil, fmt.Errorf("model: %d hidden values for %d rows × %d", len(hidden), rows, r.Cfg.Hidden)
	}
	x, err := r.Dev.Resident(hidden[:rows*r.Cfg.Hidden])
	if err != nil {
		return nil, err
	}
	if _, ok := r.Dev.Host(x); !ok {
		defer r.Dev.Free(x)
	}
	return r.logitsHost(nil, x, rows)
}

// Step is Model.Step on resident weights (the cache must have been made by
// the model r holds).
func (r *ResidentOf[F]) Step(cache *KVCache, tokens []int) ([]F, error) {
	if len(cache.k) != len(r.Layers) {
		return nil, fmt.Errorf("model: a KV cache of %d layers for a model of %d", len(cache.k), len(r.Layers))
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("model: a step needs at least one token")
	}
	ar := NewArena(r.Dev)
	defer ar.Free()
	x, rows, err := r.HiddenView(ar, []Segment{{Tokens: tokens, Parent: -1}}, cache, nil)
	if err != nil {
		return nil, err
	}
	defer r.Dev.Free(x)
	H := r.Cfg.Hidden
	return r.logitsHost(ar, x.Slice((rows-1)*H, H), 1)
}

// HiddenSegments is Model.HiddenSegments on resident weights.
func (r *ResidentOf[F]) HiddenSegments(segs []Segment) ([]F, int, error) {
	for i, s := range segs {
		if s.Parent >= i || s.Parent < -1 {
			return nil, 0, fmt.Errorf("model: segment %d has parent %d; a parent must precede its child", i, s.Parent)
		}
	}
	return r.hiddenHost(segs, nil, nil)
}

// hiddenHost is HiddenView into a fresh host slice.
func (r *ResidentOf[F]) hiddenHost(segs []Segment, cache *KVCache, sink DeviceSink[F]) ([]F, int, error) {
	ar := NewArena(r.Dev)
	defer ar.Free()
	x, rows, err := r.HiddenView(ar, segs, cache, sink)
	if err != nil {
		return nil, 0, err
	}
	out, err := toHost(r.Dev, x)
	return out, rows, err
}

// logitsHost applies the LM head to hidden rows x on the device and returns
// the logits as a fresh host slice.
func (r *ResidentOf[F]) logitsHost(ar *Arena[F], x backend.View, rows int) ([]F, error) {
	V, H := r.Cfg.Vocab, r.Cfg.Hidden
	out, err := r.Dev.Alloc(max(rows*V, 1))
	if err != nil {
		return nil, err
	}
	out = out.Slice(0, rows*V)
	r.Dev.MatNT(out, x, r.LMHead, rows, V, H, false)
	return toHost(r.Dev, out)
}

// toHost returns the contents of a buffer the caller owns as a host slice:
// the buffer's own slice on a host device, else a download (the buffer is
// then freed).
func toHost[F nn.Float](dev backend.Device[F], v backend.View) ([]F, error) {
	if s, ok := dev.Host(v); ok {
		if err := dev.Sync(); err != nil {
			return nil, err
		}
		return s[:v.N:v.N], nil
	}
	out := make([]F, v.N)
	err := dev.Download(out, v)
	dev.Free(v)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// HiddenView runs the model on a batch of segments on r's device and
// returns the final-normed hidden states [rows × Hidden] as a fresh buffer
// the caller owns (Free it on a GPU); temporaries come from ar. With a
// cache (one segment only), positions continue after the cached tokens and
// the cache is extended. Token ids must be in range (checked by the device).
func (r *ResidentOf[F]) HiddenView(ar *Arena[F], segs []Segment, cache *KVCache, sink DeviceSink[F]) (backend.View, int, error) {
	rows := 0
	for _, s := range segs {
		rows += len(s.Tokens)
	}
	x, err := r.Dev.Alloc(max(rows*r.Cfg.Hidden, 1))
	if err != nil {
		return backend.View{}, 0, err
	}
	x = x.Slice(0, rows*r.Cfg.Hidden)
	if err := r.hiddenInto(ar, x, segs, cache, sink); err != nil {
		r.Dev.Free(x)
		return backend.View{}, 0, err
	}
	return x, rows, nil
}

// ForwardView runs independent sequences on r's device and returns their
// logits [rows × Vocab] as a buffer of ar (valid until ar releases it) and
// the number of rows; nothing is copied to the host.
func (r *ResidentOf[F]) ForwardView(ar *Arena[F], seqs [][]int) (backend.View, int, error) {
	rows := 0
	for _, s := range seqs {
		rows += len(s)
	}
	x := ar.Take(rows * r.Cfg.Hidden)
	if err := r.hiddenInto(ar, x, seqSegments(seqs), nil, nil); err != nil {
		return backend.View{}, 0, err
	}
	z := ar.Take(rows * r.Cfg.Vocab)
	r.Dev.MatNT(z, x, r.LMHead, rows, r.Cfg.Vocab, r.Cfg.Hidden, false)
	return z, rows, ar.Err()
}

// hiddenInto runs the model on segs into x [rows × Hidden] (see
// HiddenView).
func (r *ResidentOf[F]) hiddenInto(ar *Arena[F], x backend.View, segs []Segment, cache *KVCache, sink DeviceSink[F]) error {
	if cache != nil && len(segs) != 1 {
		return fmt.Errorf("model: a KV cache serves exactly one sequence")
	}
	past := 0
	if cache != nil {
		past = cache.Len
		if len(cache.k) != len(r.Layers) {
			return fmt.Errorf("model: a KV cache of %d layers for a model of %d", len(cache.k), len(r.Layers))
		}
	}
	dev, H := r.Dev, r.Cfg.Hidden
	b := newBatch(segs, past)
	ids := make([]int, 0, b.rows)
	for _, s := range segs {
		ids = append(ids, s.Tokens...)
	}
	if b.rows > 0 {
		dev.Embed(x, r.Embed, ids, H)
	}
	p := &layerPass[F]{dev: dev, ar: ar, rope: r.Rope(b.maxPos), d: r.Cfg.HeadDim, eps: r.Cfg.RMSEps, b: b, cache: cache, sink: sink}
	for li := range r.Layers {
		p.li = li
		p.run(&r.Layers[li], x)
	}
	if b.rows > 0 {
		dev.RMSNorm(x, backend.View{}, x, r.Norm, b.rows, H, r.Cfg.RMSEps)
	}
	err := ar.Err()
	if err == nil && cache != nil {
		err = dev.Sync() // the cache grows only by a successful step
	}
	if err != nil {
		return err
	}
	if cache != nil {
		cache.Len += b.rows
	}
	return nil
}
