//go:build vulkan && cgo

package vulkan

// Gradient clipping and SGD on the device (Dev.SumSquares, Scale, SGD), so
// that training keeps gradients and weights resident: only the partial sums
// of the norm cross the bus.

import (
	"fmt"
	"unsafe"

	"github.com/darwinlm/darwinlm-go/backend"
)

// sumsqGroups is the most workgroups of one sumsq dispatch (partials per
// bound window); sumsqMin the fewest elements a workgroup sums.
const (
	sumsqGroups = 256
	sumsqMin    = 16 * 256
)

// sumsqPer is the elements per workgroup for a window of n: at least
// sumsqMin, a multiple of 256, and at most sumsqGroups workgroups.
func sumsqPer(n int) int {
	per := (n + sumsqGroups - 1) / sumsqGroups
	per = (per + 255) &^ 255
	return max(per, sumsqMin)
}

// sumsqBatch is the most dispatches recorded between two reads of the
// partials (well below the batch's descriptor sets).
const sumsqBatch = 512

// SumSquares returns Σ x² over vs after every recorded operation (a flush;
// a pending error, backend.ErrNonFinite included, is returned instead):
// float32 per-workgroup partials (compensated sums and a 256-way tree,
// shaders/sumsq.comp) added on the host in float64 in view order. Relative
// error ≤ about 12 float32 ulps (1e-6; docs/backends.md).
func (x *Dev) SumSquares(vs []backend.View) (float64, error) {
	if err := x.takeErr(); err != nil {
		return 0, err
	}
	type part struct {
		v      View
		groups int
		per    int
	}
	var parts []part
	var sum float64
	err := x.locked(func() error {
		d := x.d
		for i, v := range vs {
			vv, err := x.view("SumSquares", fmt.Sprintf("view %d of %d", i, len(vs)), v, v.N, false)
			if err != nil {
				return err
			}
			// Windows of a view over one binding are whole workgroups of
			// the unsplit view (per from the whole view), so its partials,
			// and the sum, are bitwise those of one binding; only a
			// binding smaller than one workgroup's elements (not a real
			// device: ≥ 4096 floats) makes windows of their own.
			lim := d.maxElems(F32)
			per := sumsqPer(vv.N)
			chunk := lim / per * per
			if chunk == 0 {
				chunk = lim
			}
			for i0 := 0; i0 < vv.N; i0 += chunk {
				ni := min(chunk, vv.N-i0)
				p := per
				if chunk == lim && per > lim {
					p = sumsqPer(ni)
				}
				parts = append(parts, part{sub(vv, i0, ni), (ni + p - 1) / p, p})
			}
		}
		for len(parts) > 0 {
			k := min(len(parts), sumsqBatch)
			words := 0
			for _, p := range parts[:k] {
				words += p.groups
			}
			if err := d.prepare(k, 4*words+arenaAlign, 0); err != nil {
				return err
			}
			out, err := d.take(&d.host, words)
			if err != nil {
				return err
			}
			off := 0
			for _, p := range parts[:k] {
				if err := d.dispatch("sumsq", []View{p.v, sub(out, off, p.groups)}, pc(p.v.N, p.per), p.groups, 1, 1); err != nil {
					return err
				}
				off += p.groups
			}
			if err := d.flush(); err != nil {
				return err
			}
			for _, s := range unsafe.Slice((*float32)(unsafe.Add(d.host.b.ptr, 4*out.Off)), words) {
				sum += float64(s)
			}
			parts = parts[k:]
		}
		if err := d.flush(); err != nil { // a sync even without views
			return err
		}
		if x.flagged() { // an earlier AdamW met a non-finite gradient
			return backend.ErrNonFinite
		}
		return nil
	})
	if err != nil {
		x.record(err)
		return 0, x.takeErr()
	}
	return sum, nil
}

// Scale records v *= s.
func (x *Dev) Scale(v backend.View, s float32) {
	x.op("Scale", func() error {
		vv, err := x.view("Scale", "v", v, v.N, false)
		if err != nil || vv.N == 0 {
			return err
		}
		return x.locked(func() error {
			return x.d.elementwise("scale", []View{vv}, vv.N, func() []byte { return pc(s) })
		})
	})
}

// SGD records w ← w − lr·(g + wd·w) in float32 (shaders/sgd.comp).
func (x *Dev) SGD(w, g backend.View, lr, wd float64) {
	x.op("SGD", func() error {
		if g.N != w.N {
			return fmt.Errorf("vulkan: SGD: g has %d elements, w %d", g.N, w.N)
		}
		wv, err := x.view("SGD", "w", w, w.N, false)
		if err != nil {
			return err
		}
		gv, err := x.view("SGD", "g", g, g.N, false)
		if err != nil || wv.N == 0 {
			return err
		}
		return x.locked(func() error {
			return x.d.elementwise("sgd", []View{wv, gv}, wv.N, func() []byte { return pc(float32(lr), float32(wd)) })
		})
	})
}
