package model

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// Weights resident on a device. A model's tensors are made resident once
// (backend.Device.Resident: the host slices themselves on the CPU, an
// uploaded copy on a GPU) and every operation of the forward pass then
// reads them in place; activations live in device buffers of an Arena.

// ResidentOf is a model's weights resident on a device Dev. When Cfg.Tied,
// LMHead is the same view as Embed.
type ResidentOf[F nn.Float] struct {
	Dev    backend.Device[F]
	Cfg    Config
	Embed  backend.View // [Vocab × Hidden]
	Norm   backend.View // [Hidden]
	LMHead backend.View // [Vocab × Hidden]
	Layers []DeviceLayer

	rope func(n int) *nn.Rope
	// copied is set when the views are device copies (not the host
	// slices), which Release frees.
	copied bool
}

// Resident is a float32 model resident on a device (inference, search,
// fine-tuning).
type Resident = ResidentOf[float32]

// Upload makes m's weights resident on dev: on a host device the views
// alias m's slices (no copy; training through them updates m), on a GPU
// they are copies (Release frees them). m's tensors must not be resized
// while r is in use.
func (m *Model) Upload(dev backend.Device[float32]) (*Resident, error) {
	return UploadWeights(dev, m.Cfg, m.Embed, m.Norm, m.LMHead, m.Layers, m.Rope)
}

// UploadWeights makes host weights resident on dev (see Model.Upload); rope
// gives the model's rotary tables grown to n positions.
func UploadWeights[F nn.Float](dev backend.Device[F], c Config, embed, norm, lmHead []F, layers []LayerOf[F], rope func(n int) *nn.Rope) (*ResidentOf[F], error) {
	r := &ResidentOf[F]{Dev: dev, Cfg: c, rope: rope, Layers: make([]DeviceLayer, len(layers))}
	var err error
	put := func(s []F) backend.View {
		if err != nil || len(s) == 0 {
			return backend.View{}
		}
		var v backend.View
		v, err = dev.Resident(s)
		if err == nil {
			if _, ok := dev.Host(v); !ok {
				r.copied = true
			}
		}
		return v
	}
	r.Embed, r.Norm = put(embed), put(norm)
	if c.Tied {
		r.LMHead = r.Embed
	} else {
		r.LMHead = put(lmHead)
	}
	for i := range layers {
		r.Layers[i], err = residentLayer(dev, &layers[i], put)
	}
	if err != nil {
		r.Release()
		return nil, fmt.Errorf("model: weights to %s: %w", dev.Name(), err)
	}
	return r, nil
}

func residentLayer[F nn.Float](dev backend.Device[F], l *LayerOf[F], put func([]F) backend.View) (DeviceLayer, error) {
	d := DeviceLayer{Heads: l.Heads, KVHeads: l.KVHeads, Inter: l.Inter, KVMap: l.KVMap}
	dst := d.Tensors()
	for t, s := range l.Tensors() {
		*dst[t] = put(*s)
	}
	return d, nil
}

// Rope returns the rotary tables grown to n positions.
func (r *ResidentOf[F]) Rope(n int) *nn.Rope { return r.rope(n) }

// Release frees device copies of the weights (nothing on a host device,
// whose views are the host slices). r must not be used afterwards.
func (r *ResidentOf[F]) Release() {
	if r == nil || !r.copied {
		return
	}
	free := func(v backend.View) {
		if !v.Nil() {
			r.Dev.Free(v)
		}
	}
	free(r.Embed)
	free(r.Norm)
	if !r.Cfg.Tied {
		free(r.LMHead)
	}
	for i := range r.Layers {
		for _, v := range r.Layers[i].Tensors() {
			free(*v)
		}
	}
	r.copied = false
}

// WriteBack copies the resident weights into the host tensors they were
// made from (after training on a GPU). On a host device the views are the
// host slices and nothing is copied.
func WriteBack[F nn.Float](r *ResidentOf[F], embed, norm, lmHead []F, layers []LayerOf[F]) error {
	if !r.copied {
		return r.Dev.Sync()
	}
	var err error
	get := func(dst []F, v backend.View) {
		if err == nil && len(dst) > 0 {
			err = r.Dev.Download(dst, v)
		}
	}
	get(embed, r.Embed)
	get(norm, r.Norm)
	if !r.Cfg.Tied {
		get(lmHead, r.LMHead)
	}
	for i := range layers {
		src := r.Layers[i].Tensors()
		for t, s := range layers[i].Tensors() {
			get(*s, *src[t])
		}
	}
	return err
}

// Reload copies host tensors into the resident weights made from them
// (after the host tensors changed, e.g. a host optimizer step on a GPU's
// weights). On a host device the views are the host slices: nothing to do.
func Reload[F nn.Float](r *ResidentOf[F], embed, norm, lmHead []F, layers []LayerOf[F]) error {
	if !r.copied {
		return nil
	}
	var err error
	put := func(v backend.View, src []F) {
		if err == nil && len(src) > 0 {
			err = r.Dev.Upload(v, src)
		}
	}
	put(r.Embed, embed)
	put(r.Norm, norm)
	if !r.Cfg.Tied {
		put(r.LMHead, lmHead)
	}
	for i := range layers {
		dst := r.Layers[i].Tensors()
		for t, s := range layers[i].Tensors() {
			put(*dst[t], *s)
		}
	}
	return err
}

// WriteBack copies r's weights into m after training on a GPU (see the
// generic WriteBack); r must have been made from m.
func (m *Model) WriteBack(r *Resident) error {
	return WriteBack(r, m.Embed, m.Norm, m.LMHead, m.Layers)
}

// Arena hands out device buffers for activations and reuses them from step
// to step: buffers are taken in a stack order (Take), Mark/Release return
// the ones taken after a mark (e.g. a layer's temporaries), and Reset
// returns them all. A slot keeps its buffer across steps and is regrown
// only when a larger one is asked for, so a loop of same-shaped steps
// allocates nothing after the first. Buffers are NOT cleared on reuse: an
// accumulating use must Zero first.
type Arena[F backend.Float] struct {
	dev   backend.Device[F]
	slots []backend.View
	top   int
	err   error
}

// NewArena returns an empty arena on dev.
func NewArena[F backend.Float](dev backend.Device[F]) *Arena[F] { return &Arena[F]{dev: dev} }

// Device is the arena's device.
func (a *Arena[F]) Device() backend.Device[F] { return a.dev }

// Take returns a buffer of n elements (contents undefined). An allocation
// failure is kept (Err) and an absent view returned, which the device
// reports as a sticky error at its next use.
func (a *Arena[F]) Take(n int) backend.View {
	if a.top < len(a.slots) {
		s := a.slots[a.top]
		if s.N >= n {
			a.top++
			return s.Slice(0, n)
		}
		if !s.Nil() {
			a.dev.Free(s)
		}
		a.slots[a.top] = backend.View{}
	} else {
		a.slots = append(a.slots, backend.View{})
	}
	v, err := a.dev.Alloc(max(n, 1))
	a.top++
	if err != nil {
		if a.err == nil {
			a.err = err
		}
		return backend.View{}
	}
	a.slots[a.top-1] = v
	return v.Slice(0, n)
}

// Mark returns the current stack position for Release.
func (a *Arena[F]) Mark() int { return a.top }

// Release returns the buffers taken since mark (their slots keep their
// storage for the next Take).
func (a *Arena[F]) Release(mark int) { a.top = mark }

// Reset returns every buffer.
func (a *Arena[F]) Reset() { a.top = 0 }

// Err returns the first allocation failure and clears it.
func (a *Arena[F]) Err() error {
	err := a.err
	a.err = nil
	return err
}

// Free releases every buffer to the device.
func (a *Arena[F]) Free() {
	for _, s := range a.slots {
		if !s.Nil() {
			a.dev.Free(s)
		}
	}
	a.slots, a.top = nil, 0
}
