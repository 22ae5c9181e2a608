//go:build vulkan && cgo

package vulkan

// Dev: the device-resident interface backend.Device[float32] on a Vulkan
// device. Buffers are *Buffer (F32), views are backend.View over them.
// Operations are recorded into the device's batch (barriers between them)
// and run at the next flush: Sync, Download, a loss or a full batch (an
// upload into a buffer the batch uses is a recorded copy, a free of one
// waits for the flush). Errors are sticky (the first is
// kept, later operations are skipped, Sync returns and clears it); nothing
// panics (a panic inside an operation, e.g. from a RopeTable, is recovered
// and recorded).

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"sync"
	"unsafe"

	"github.com/vkngwrapper/core/v2/core1_0"

	"github.com/darwinlm/darwinlm-go/backend"
)

// Dev implements backend.Device[float32] on a Device. Each Dev has its own
// sticky error and AdamW non-finite flag (so that goroutines training on
// one GPU, e.g. a search's workers, do not see each other's); all Devs of
// a Device share its buffers, queue and batch.
type Dev struct {
	d    *Device
	emu  sync.Mutex
	err  error
	slot int // word of the device's flag buffer (−1: none yet)
}

var _ backend.Device[float32] = (*Dev)(nil)

// F32 returns a new backend.Device[float32] handle on the device (as
// nn.DeviceFor returns a new host device per call).
func (d *Device) F32() *Dev {
	x := &Dev{d: d, slot: -1}
	runtime.SetFinalizer(x, (*Dev).release)
	return x
}

// release returns the Dev's flag slot (finalizer).
func (x *Dev) release() {
	d := x.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if x.slot >= 0 && d.dev != nil && d.flag != nil && !d.flag.released {
		d.flagWords()[x.slot] = 0
		d.flagFree = append(d.flagFree, x.slot)
	}
	x.slot = -1
}

func (d *Device) flagWords() []uint32 {
	return unsafe.Slice((*uint32)(d.flag.ptr), d.flag.bytes/4)
}

// flagSlot returns x's word of the flag buffer, growing the buffer (after
// a flush, so that no recorded AdamW writes the old one) when full. The
// caller holds d.mu.
func (x *Dev) flagSlot() (View, error) {
	d := x.d
	if x.slot < 0 {
		if n := len(d.flagFree); n > 0 {
			x.slot, d.flagFree = d.flagFree[n-1], d.flagFree[:n-1]
		} else {
			x.slot = d.flagNext
			d.flagNext++
		}
	}
	if d.flag == nil || x.slot >= d.flag.bytes/4 {
		if err := d.flush(); err != nil {
			return View{}, err
		}
		size := 1024
		if d.flag != nil {
			size = 2 * d.flag.bytes
		}
		f, err := d.newBuffer(size, d.stageType, true)
		if err != nil {
			return View{}, err
		}
		f.dt = I32
		w := unsafe.Slice((*uint32)(f.ptr), size/4)
		clear(w)
		if d.flag != nil {
			copy(w, d.flagWords())
			d.flag.free()
		}
		d.flag = f
	}
	return d.flag.Slice(x.slot, 1), nil
}

// Device is the underlying buffer-level device.
func (x *Dev) Device() *Device { return x.d }

// Name is "vulkan: " and the driver's device name.
func (x *Dev) Name() string { return "vulkan: " + x.d.Name() }

// Host is false: buffers live on the device.
func (x *Dev) Host(backend.View) ([]float32, bool) { return nil, false }

func (x *Dev) failed() bool {
	x.emu.Lock()
	defer x.emu.Unlock()
	return x.err != nil
}

func (x *Dev) record(err error) {
	if err == nil {
		return
	}
	x.emu.Lock()
	if x.err == nil {
		x.err = err
	}
	x.emu.Unlock()
}

// takeErr returns the sticky error and clears it.
func (x *Dev) takeErr() error {
	x.emu.Lock()
	defer x.emu.Unlock()
	err := x.err
	x.err = nil
	return err
}

// op runs f unless an error is pending, recording its error or panic.
func (x *Dev) op(name string, f func() error) {
	if x.failed() {
		return
	}
	if x.d.dev == nil {
		x.record(fmt.Errorf("vulkan: %s: device is closed", name))
		return
	}
	defer func() {
		if r := recover(); r != nil {
			x.record(fmt.Errorf("vulkan: %s: %v", name, r))
		}
	}()
	x.record(f())
}

// locked runs f holding the device lock.
func (x *Dev) locked(f func() error) error {
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	if x.d.dev == nil {
		return errors.New("vulkan: device is closed")
	}
	return f()
}

// view checks an operand of n elements and returns it as a buffer view of
// exactly n elements; an absent operand is allowed when optional.
func (x *Dev) view(op, name string, v backend.View, n int, optional bool) (View, error) {
	if v.Buf == nil {
		if optional || n == 0 {
			return View{}, nil
		}
		return View{}, fmt.Errorf("vulkan: %s: %s is absent, need %d elements", op, name, n)
	}
	b, ok := v.Buf.(*Buffer)
	if !ok || b == nil {
		return View{}, fmt.Errorf("vulkan: %s: %s is a %T, not a buffer of this Vulkan device", op, name, v.Buf)
	}
	if b.d != x.d {
		return View{}, fmt.Errorf("vulkan: %s: %s belongs to another device", op, name)
	}
	if b.freed {
		return View{}, fmt.Errorf("vulkan: %s: %s is a freed buffer", op, name)
	}
	if b.dt != F32 {
		return View{}, fmt.Errorf("vulkan: %s: %s is a %s buffer, want f32", op, name, b.dt)
	}
	if err := v.Check(op, name, n); err != nil {
		return View{}, fmt.Errorf("vulkan: %w", err)
	}
	return View{b, v.Off, n}, nil
}

// fits checks that v can be bound whole (the new operations do not split
// their operands into windows).
func (d *Device) fits(op, name string, v View) error {
	if v.B != nil && v.N > d.maxElems(v.B.dt) {
		return fmt.Errorf("vulkan: %s: %s of %d elements exceeds maxStorageBufferRange (%d bytes) of %s",
			op, name, v.N, d.maxBind, d.props.DriverName)
	}
	return nil
}

// Alloc returns a zeroed buffer of n float32.
func (x *Dev) Alloc(n int) (backend.View, error) {
	if n < 0 {
		return backend.View{}, fmt.Errorf("vulkan: Alloc: negative size %d", n)
	}
	var b *Buffer
	err := x.locked(func() error {
		var err error
		if b, err = x.d.alloc(F32, max(n, 1)); err != nil {
			return err
		}
		b.n = n
		if b.ptr != nil {
			clear(unsafe.Slice((*byte)(b.ptr), b.bytes))
			return nil
		}
		return x.d.cmdFill(b.Slice(0, b.bytes/4), b.bytes/4)
	})
	if err != nil {
		return backend.View{}, err
	}
	return backend.View{Buf: b, Off: 0, N: n}, nil
}

// Free releases the buffer behind v (after the recorded work using it).
func (x *Dev) Free(v backend.View) {
	if b, ok := v.Buf.(*Buffer); ok && b != nil && b.d == x.d {
		b.Free()
	}
}

// Upload copies src into dst, in order with the recorded operations.
func (x *Dev) Upload(dst backend.View, src []float32) error {
	dv, err := x.view("Upload", "dst", dst, len(src), false)
	if err != nil || len(src) == 0 {
		return err
	}
	return x.locked(func() error { return x.d.uploadLocked(dv, float32Bytes(src)) })
}

// Download copies src into dst after every recorded operation; it returns
// (and clears) a pending error instead, backend.ErrNonFinite included.
func (x *Dev) Download(dst []float32, src backend.View) error {
	if err := x.takeErr(); err != nil {
		return err
	}
	sv, err := x.view("Download", "src", src, len(dst), false)
	if err != nil {
		return err
	}
	return x.locked(func() error {
		if err := x.d.flush(); err != nil {
			return err
		}
		if x.flagged() {
			return backend.ErrNonFinite
		}
		if len(dst) == 0 {
			return nil
		}
		return x.d.downloadLocked(float32Bytes(dst), sv)
	})
}

// flagged reports (and clears) x's non-finite flag; the caller holds d.mu
// and has flushed. The flag is a pending error like the host device's:
// Sync, Download and the losses return it.
func (x *Dev) flagged() bool {
	d := x.d
	if x.slot < 0 || d.flag == nil {
		return false
	}
	w := d.flagWords()
	if w[x.slot] == 0 {
		return false
	}
	w[x.slot] = 0
	return true
}

// Resident uploads a copy of host.
func (x *Dev) Resident(host []float32) (backend.View, error) {
	v, err := x.Alloc(len(host))
	if err != nil {
		return v, err
	}
	if err := x.Upload(v, host); err != nil {
		x.Free(v)
		return backend.View{}, err
	}
	return v, nil
}

// Sync runs the recorded operations, waits for them and returns the first
// error (clearing it); backend.ErrNonFinite when AdamW met a non-finite
// gradient since the last Sync.
func (x *Dev) Sync() error {
	ferr := x.locked(func() error {
		if err := x.d.flush(); err != nil {
			return err
		}
		if x.flagged() {
			return backend.ErrNonFinite
		}
		return nil
	})
	if err := x.takeErr(); err != nil {
		return err
	}
	return ferr
}

// Zero sets v to 0.
func (x *Dev) Zero(v backend.View) {
	x.op("Zero", func() error {
		vv, err := x.view("Zero", "v", v, v.N, false)
		if err != nil || vv.N == 0 {
			return err
		}
		return x.locked(func() error { return x.d.cmdFill(vv, vv.N) })
	})
}

// Copy copies src into dst (same length, not overlapping).
func (x *Dev) Copy(dst, src backend.View) {
	x.op("Copy", func() error {
		if dst.N != src.N {
			return fmt.Errorf("vulkan: Copy: dst has %d elements, src %d", dst.N, src.N)
		}
		dv, err := x.view("Copy", "dst", dst, dst.N, false)
		if err != nil {
			return err
		}
		sv, err := x.view("Copy", "src", src, src.N, false)
		if err != nil || sv.N == 0 {
			return err
		}
		if dv.B == sv.B && dv.Off < sv.Off+sv.N && sv.Off < dv.Off+dv.N {
			return fmt.Errorf("vulkan: Copy: dst [%d, %d) and src [%d, %d) overlap", dv.Off, dv.Off+dv.N, sv.Off, sv.Off+sv.N)
		}
		return x.locked(func() error { return x.d.cmdCopy(dv, sv, sv.N) })
	})
}

// Add adds src into dst element-wise (same length).
func (x *Dev) Add(dst, src backend.View) {
	x.op("Add", func() error {
		if dst.N != src.N {
			return fmt.Errorf("vulkan: Add: dst has %d elements, src %d", dst.N, src.N)
		}
		dv, err := x.view("Add", "dst", dst, dst.N, false)
		if err != nil {
			return err
		}
		sv, err := x.view("Add", "src", src, src.N, false)
		if err != nil || sv.N == 0 {
			return err
		}
		return x.locked(func() error {
			return x.d.elementwise("add", []View{dv, sv}, dv.N, func() []byte { return nil })
		})
	})
}

func (x *Dev) mat(op string, tA, tB bool, c, a, b backend.View, m, n, k int, acc bool) {
	x.op(op, func() error {
		if m < 0 || n < 0 || k < 0 {
			return fmt.Errorf("vulkan: %s: negative size %d×%d×%d", op, m, n, k)
		}
		cv, err := x.view(op, "C", c, m*n, false)
		if err != nil || m*n == 0 {
			return err
		}
		av, err := x.view(op, "A", a, m*k, false)
		if err != nil {
			return err
		}
		bv, err := x.view(op, "B", b, n*k, false)
		if err != nil {
			return err
		}
		return x.locked(func() error {
			if k == 0 {
				if acc {
					return nil
				}
				return x.d.cmdFill(cv, cv.N)
			}
			return x.d.gemm(tA, tB, cv, av, bv, m, n, k, acc)
		})
	})
}

// MatNT: C[m×n] (+)= A[m×k]·B[n×k]ᵀ.
func (x *Dev) MatNT(c, a, b backend.View, m, n, k int, acc bool) {
	x.mat("MatNT", false, true, c, a, b, m, n, k, acc)
}

// MatNN: C[m×n] (+)= A[m×k]·B[k×n].
func (x *Dev) MatNN(c, a, b backend.View, m, n, k int, acc bool) {
	x.mat("MatNN", false, false, c, a, b, m, n, k, acc)
}

// MatTN: C[m×n] (+)= A[k×m]ᵀ·B[k×n].
func (x *Dev) MatTN(c, a, b backend.View, m, n, k int, acc bool) {
	x.mat("MatTN", true, false, c, a, b, m, n, k, acc)
}

// Syrk: H[n×n] += X[k×n]ᵀ·X[k×n] (the TN product with X bound twice: every
// element and its mirror sum the same products in the same order, so H
// stays exactly symmetric).
func (x *Dev) Syrk(h, xv backend.View, n, k int) {
	x.mat("Syrk", true, false, h, xv, xv, n, n, k, true)
}

// RMSNorm: out = x/rms(x)·w per row; rstd (optional) gets 1/rms.
func (x *Dev) RMSNorm(out, rstd, xv, w backend.View, rows, dim int, eps float64) {
	x.op("RMSNorm", func() error {
		if rows < 0 || dim < 0 {
			return fmt.Errorf("vulkan: RMSNorm: negative size %d×%d", rows, dim)
		}
		ov, err := x.view("RMSNorm", "out", out, rows*dim, false)
		if err != nil || rows*dim == 0 {
			return err
		}
		rv, err := x.view("RMSNorm", "rstd", rstd, rows, true)
		if err != nil {
			return err
		}
		xx, err := x.view("RMSNorm", "x", xv, rows*dim, false)
		if err != nil {
			return err
		}
		wv, err := x.view("RMSNorm", "w", w, dim, false)
		if err != nil {
			return err
		}
		return x.d.RMSNorm(ov, rv, xx, wv, rows, dim, float32(eps))
	})
}

// RMSNormBackward: dx += ∂/∂x, dw += ∂/∂w (either may be absent).
func (x *Dev) RMSNormBackward(dx, dw, dout, xv, w, rstd backend.View, rows, dim int) {
	x.op("RMSNormBackward", func() error {
		if rows < 0 || dim < 0 {
			return fmt.Errorf("vulkan: RMSNormBackward: negative size %d×%d", rows, dim)
		}
		if rows*dim == 0 {
			return nil
		}
		var vs [6]View
		for i, c := range []struct {
			name string
			v    backend.View
			n    int
			opt  bool
		}{{"dx", dx, rows * dim, true}, {"dw", dw, dim, true}, {"dout", dout, rows * dim, false},
			{"x", xv, rows * dim, false}, {"w", w, dim, false}, {"rstd", rstd, rows, false}} {
			v, err := x.view("RMSNormBackward", c.name, c.v, c.n, c.opt)
			if err != nil {
				return err
			}
			vs[i] = v
		}
		return x.d.RMSNormBackward(vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], rows, dim)
	})
}

// AddBias adds b [cols] to every row of x [rows × cols] (absent b: no-op).
func (x *Dev) AddBias(xv, b backend.View, rows int) {
	x.addBias("AddBias", "addbias", xv, b, rows)
}

// AddBiasBackward: db += column sums of dout (rows in order).
func (x *Dev) AddBiasBackward(db, dout backend.View, rows int) {
	x.addBias("AddBiasBackward", "addbias_bwd", dout, db, rows)
}

func (x *Dev) addBias(op, prog string, xv, b backend.View, rows int) {
	x.op(op, func() error {
		if b.Nil() {
			return nil
		}
		if rows < 0 {
			return fmt.Errorf("vulkan: %s: negative rows %d", op, rows)
		}
		cols := b.N
		bv, err := x.view(op, "bias", b, cols, false)
		if err != nil || cols == 0 || rows == 0 {
			return err
		}
		mv, err := x.view(op, "matrix", xv, rows*cols, false)
		if err != nil {
			return err
		}
		return x.locked(func() error {
			d := x.d
			rc, err := d.rowChunk(op, cols)
			if err != nil {
				return err
			}
			if prog == "addbias_bwd" {
				cy, err := d.carry((rows+rc-1)/rc, (rows+rc-1)/rc, cols)
				if err != nil {
					return err
				}
				for r0 := 0; r0 < rows; r0 += rc {
					nr := min(rc, rows-r0)
					if err := d.dispatch(prog, []View{sub(mv, r0*cols, nr*cols), bv, cy}, pc(nr, cols, carryMode(r0, nr, rows)), (cols+255)/256, 1, 1); err != nil {
						return err
					}
				}
				return nil
			}
			for r0 := 0; r0 < rows; r0 += rc {
				nr := min(rc, rows-r0)
				gx, gy := d.grid1D(nr * cols)
				if err := d.dispatch(prog, []View{sub(mv, r0*cols, nr*cols), bv}, pc(nr, cols), gx, gy, 1); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// SiLUMul: out = silu(gate)·up (out may equal gate or up).
func (x *Dev) SiLUMul(out, gate, up backend.View) {
	x.op("SiLUMul", func() error {
		n := out.N
		var vs [3]View
		for i, c := range []struct {
			name string
			v    backend.View
		}{{"out", out}, {"gate", gate}, {"up", up}} {
			if c.v.N != n {
				return fmt.Errorf("vulkan: SiLUMul: %s has %d elements, out %d", c.name, c.v.N, n)
			}
			v, err := x.view("SiLUMul", c.name, c.v, n, false)
			if err != nil {
				return err
			}
			vs[i] = v
		}
		if n == 0 {
			return nil
		}
		return x.d.SiLUMul(vs[0], vs[1], vs[2], n)
	})
}

// SwiGLUBackward writes dgate and dup from dout.
func (x *Dev) SwiGLUBackward(dgate, dup, dout, gate, up backend.View) {
	x.op("SwiGLUBackward", func() error {
		n := gate.N
		var vs [5]View
		for i, c := range []struct {
			name string
			v    backend.View
		}{{"dgate", dgate}, {"dup", dup}, {"dout", dout}, {"gate", gate}, {"up", up}} {
			if c.v.N != n {
				return fmt.Errorf("vulkan: SwiGLUBackward: %s has %d elements, gate %d", c.name, c.v.N, n)
			}
			v, err := x.view("SwiGLUBackward", c.name, c.v, n, false)
			if err != nil {
				return err
			}
			vs[i] = v
		}
		if n == 0 {
			return nil
		}
		return x.d.SwiGLUBackward(vs[0], vs[1], vs[2], vs[3], vs[4], n)
	})
}

// Embed gathers rows ids of table [vocab × dim] into out.
func (x *Dev) Embed(out, table backend.View, ids []int, dim int) {
	x.embed("Embed", "embed", out, table, ids, dim)
}

// EmbedBackward: dtable[ids[i]] += dx[i] (rows in order).
func (x *Dev) EmbedBackward(dtable, dx backend.View, ids []int, dim int) {
	x.embed("EmbedBackward", "embed_bwd", dx, dtable, ids, dim)
}

func (x *Dev) embed(op, prog string, rows, table backend.View, ids []int, dim int) {
	x.op(op, func() error {
		if dim <= 0 {
			return fmt.Errorf("vulkan: %s: dim %d must be positive", op, dim)
		}
		if table.N%dim != 0 {
			return fmt.Errorf("vulkan: %s: table of %d elements is not whole rows of %d", op, table.N, dim)
		}
		vocab := table.N / dim
		for i, id := range ids {
			if id < 0 || id >= vocab {
				return fmt.Errorf("vulkan: %s: id %d at position %d outside the vocabulary of %d", op, id, i, vocab)
			}
		}
		tv, err := x.view(op, "table", table, vocab*dim, false)
		if err != nil {
			return err
		}
		rv, err := x.view(op, "rows", rows, len(ids)*dim, false)
		if err != nil || len(ids) == 0 {
			return err
		}
		return x.locked(func() error { return x.d.embedSplit(op, prog, tv, rv, ids, vocab, dim) })
	})
}

// embedSplit records the gather (prog "embed": rows[i] = table[ids[i]]) or
// its gradient ("embed_bwd": table[ids[i]] += rows[i], rows in order) with
// the table split into row ranges and the rows into chunks that each fit
// one binding: each dispatch binds one table range and one chunk of rows,
// with the ids rebased to the range (the shaders skip ids outside it). An
// element of the table is touched only by the dispatches of its range, in
// row order, so the results are bitwise those of one whole dispatch.
// Each dispatch prepares its own ids (the batch may flush between them).
// The caller holds d.mu.
func (d *Device) embedSplit(op, prog string, tv, rv View, ids []int, vocab, dim int) error {
	lim := d.maxElems(F32)
	if dim > lim {
		return fmt.Errorf("vulkan: %s: one row of %d floats exceeds maxStorageBufferRange (%d bytes) of %s", op, dim, d.maxBind, d.props.DriverName)
	}
	tr, rc := lim/dim, lim/dim // table rows per range, rows per chunk
	reb := make([]int, len(ids))
	for v0 := 0; v0 < vocab; v0 += tr {
		nv := min(tr, vocab-v0)
		tab := sub(tv, v0*dim, nv*dim)
		for r0 := 0; r0 < len(ids); r0 += rc {
			nr := min(rc, len(ids)-r0)
			any := false
			for i, id := range ids[r0 : r0+nr] {
				reb[i] = id - v0
				any = any || (id >= v0 && id < v0+nv)
			}
			if !any {
				continue
			}
			if err := d.prepare(1, 4*nr, 0); err != nil {
				return err
			}
			iv, err := d.hostData(intsBytes(reb[:nr]))
			if err != nil {
				return err
			}
			rows := sub(rv, r0*dim, nr*dim)
			if prog == "embed" {
				gx, gy := d.grid1D(nr * dim)
				err = d.dispatch(prog, []View{tab, iv, rows}, pc(nr, dim, nv), gx, gy, 1)
			} else {
				err = d.dispatch(prog, []View{rows, iv, tab}, pc(nr, dim, nv), (dim+255)/256, 1, 1)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// AdamW updates w, m, v from g; a non-finite gradient makes the next Sync
// return backend.ErrNonFinite.
func (x *Dev) AdamW(w, g, m, v backend.View, s backend.AdamWStep) {
	x.op("AdamW", func() error {
		n := w.N
		var vs [4]View
		for i, c := range []struct {
			name string
			v    backend.View
		}{{"w", w}, {"g", g}, {"m", m}, {"v", v}} {
			if c.v.N != n {
				return fmt.Errorf("vulkan: AdamW: %s has %d elements, w %d", c.name, c.v.N, n)
			}
			vv, err := x.view("AdamW", c.name, c.v, n, false)
			if err != nil {
				return err
			}
			vs[i] = vv
		}
		if n == 0 {
			return nil
		}
		return x.locked(func() error {
			d := x.d
			fv, err := x.flagSlot()
			if err != nil {
				return err
			}
			rest := pc(s.Decay, s.B1, s.C1, s.B2, s.C2, s.BC2s, s.Eps, s.NegLR1)
			chunk := d.maxElems(F32)
			for i0 := 0; i0 < n; i0 += chunk {
				ni := min(chunk, n-i0)
				views := []View{sub(vs[0], i0, ni), sub(vs[1], i0, ni), sub(vs[2], i0, ni), sub(vs[3], i0, ni), fv}
				gx, gy := d.grid1D(ni)
				if err := d.dispatch("adamw_step", views, append(pc(ni), rest...), gx, gy, 1); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// ropeTab is a RopeTable's cos/sin on the device for positions [0, n).
type ropeTab struct {
	n, half  int
	cos, sin *Buffer
	used     uint64 // d.ropeClock at the last use
}

// ropeTable returns r's tables covering n positions, uploading them when
// r is new or they are too short (caller holds d.mu).
func (d *Device) ropeTable(r backend.RopeTable, n int) (*ropeTab, error) {
	half := r.HeadDimension() / 2
	var key any
	if t := reflect.TypeOf(r); t.Comparable() {
		key = r
	}
	if key != nil {
		if rt := d.ropes[key]; rt != nil && rt.n >= n && rt.half == half {
			d.ropeClock++
			rt.used = d.ropeClock
			return rt, nil
		}
	}
	c, s := make([]float32, n*half), make([]float32, n*half)
	for p := 0; p < n; p++ {
		cp, sp := r.Table(p)
		if len(cp) < half || len(sp) < half {
			return nil, fmt.Errorf("vulkan: Rope: the table has %d/%d values at position %d, want %d", len(cp), len(sp), p, half)
		}
		copy(c[p*half:], cp[:half])
		copy(s[p*half:], sp[:half])
	}
	rt := &ropeTab{n: n, half: half}
	for i, src := range [][]float32{c, s} {
		b, err := d.alloc(F32, max(len(src), 1))
		if err != nil {
			return nil, err
		}
		if err := d.uploadLocked(b.Slice(0, len(src)), float32Bytes(src)); err != nil {
			return nil, err
		}
		if i == 0 {
			rt.cos = b
		} else {
			rt.sin = b
		}
	}
	if key == nil {
		d.deferFree(rt.cos, rt.sin) // not cacheable: freed with this batch
		return rt, nil
	}
	if old := d.ropes[key]; old != nil {
		d.deferFree(old.cos, old.sin)
		delete(d.ropes, key)
	}
	// A few tables at a time (a search makes a model, and a table, per
	// candidate): the least recently used goes.
	for len(d.ropes) >= maxRopeTables {
		var lk any
		for k, t := range d.ropes {
			if lk == nil || t.used < d.ropes[lk].used {
				lk = k
			}
		}
		d.deferFree(d.ropes[lk].cos, d.ropes[lk].sin)
		delete(d.ropes, lk)
	}
	d.ropeClock++
	rt.used = d.ropeClock
	d.ropes[key] = rt
	return rt, nil
}

const maxRopeTables = 8

// deferFree frees buffers after the batch being recorded.
func (d *Device) deferFree(bs ...*Buffer) {
	for _, b := range bs {
		if d.open {
			b.freed = true
			d.deferred = append(d.deferred, b)
		} else {
			b.free()
		}
	}
}

// Rope rotates x [rows × nHeads·D] in place at each sequence's positions.
func (x *Dev) Rope(xv backend.View, r backend.RopeTable, seqs []backend.Seq, nHeads int, inverse bool) {
	x.op("Rope", func() error {
		if r == nil {
			return errors.New("vulkan: Rope: no table")
		}
		D := r.HeadDimension()
		if D <= 0 || D%2 != 0 || nHeads <= 0 {
			return fmt.Errorf("vulkan: Rope: head dim %d must be even and positive, heads %d positive", D, nHeads)
		}
		rowLen := nHeads * D
		rows, npos, n := 0, 0, 0
		for i, s := range seqs {
			if s.Row < 0 || s.T < 0 || s.Pos < 0 {
				return fmt.Errorf("vulkan: Rope: sequence %d has row %d, T %d, pos %d", i, s.Row, s.T, s.Pos)
			}
			if s.T > 0 {
				rows, npos, n = max(rows, s.Row+s.T), max(npos, s.Pos+s.T), n+s.T
			}
		}
		if n == 0 {
			return nil
		}
		xx, err := x.view("Rope", "x", xv, rows*rowLen, false)
		if err != nil {
			return err
		}
		pairs := make([]int32, 0, 2*n)
		for _, s := range seqs {
			for t := 0; t < s.T; t++ {
				pairs = append(pairs, int32(s.Row+t), int32(s.Pos+t))
			}
		}
		return x.locked(func() error {
			d := x.d
			half := D / 2
			lim := d.maxElems(F32)
			if rowLen > lim || half > lim {
				return fmt.Errorf("vulkan: Rope: one row of %d floats exceeds maxStorageBufferRange (%d bytes) of %s", rowLen, d.maxBind, d.props.DriverName)
			}
			// Entries in chunks whose rows of x and positions of the
			// tables each span one binding; the pairs are rebased to the
			// chunk's first row and position (each pair's arithmetic is
			// unchanged, so the bits are those of one dispatch).
			type chunk struct{ e0, e1, r0, r1, p0, p1 int }
			var chunks []chunk
			for e := 0; e < n; e++ {
				row, pos := int(pairs[2*e]), int(pairs[2*e+1])
				if k := len(chunks) - 1; k >= 0 {
					c := &chunks[k]
					r0, r1, p0, p1 := min(c.r0, row), max(c.r1, row+1), min(c.p0, pos), max(c.p1, pos+1)
					if (r1-r0)*rowLen <= lim && (p1-p0)*half <= lim {
						c.e1, c.r0, c.r1, c.p0, c.p1 = e+1, r0, r1, p0, p1
						continue
					}
				}
				chunks = append(chunks, chunk{e, e + 1, row, row + 1, pos, pos + 1})
			}
			rt, err := d.ropeTable(r, npos)
			if err != nil {
				return err
			}
			if err := d.prepare(len(chunks), 4*len(pairs)+arenaAlign, 0); err != nil {
				return err
			}
			sign := float32(1)
			if inverse {
				sign = -1
			}
			for _, c := range chunks {
				ps := pairs[2*c.e0 : 2*c.e1]
				for i := 0; i < len(ps); i += 2 {
					ps[i] -= int32(c.r0)
					ps[i+1] -= int32(c.p0)
				}
				pv, err := d.hostData(int32Bytes(ps))
				if err != nil {
					return err
				}
				ne := c.e1 - c.e0
				gx, gy := d.grid1D(ne * nHeads * half)
				views := []View{sub(xx, c.r0*rowLen, (c.r1-c.r0)*rowLen), rt.cos.Slice(c.p0*half, (c.p1-c.p0)*half),
					rt.sin.Slice(c.p0*half, (c.p1-c.p0)*half), pv}
				if err := d.dispatch("rope_seq", views, pc(ne, nHeads, D, r.IsInterleaved(), sign), gx, gy, 1); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// headsMap checks h and returns the K/V head of every query head.
func headsMap(op string, h backend.Heads) ([]int, error) {
	if h.NH <= 0 || h.NKV <= 0 || h.D <= 0 {
		return nil, fmt.Errorf("vulkan: %s: heads NH %d, NKV %d, D %d must be positive", op, h.NH, h.NKV, h.D)
	}
	if h.KVMap == nil {
		if h.NH%h.NKV != 0 {
			return nil, fmt.Errorf("vulkan: %s: %d query heads do not group evenly over %d K/V heads; give KVMap", op, h.NH, h.NKV)
		}
		m := make([]int, h.NH)
		for i := range m {
			m[i] = i / (h.NH / h.NKV)
		}
		return m, nil
	}
	if len(h.KVMap) != h.NH {
		return nil, fmt.Errorf("vulkan: %s: KVMap has %d entries for %d query heads", op, len(h.KVMap), h.NH)
	}
	for i, k := range h.KVMap {
		if k < 0 || k >= h.NKV {
			return nil, fmt.Errorf("vulkan: %s: KVMap[%d] = %d outside [0, %d)", op, i, k, h.NKV)
		}
	}
	return h.KVMap, nil
}

// identity is 0, 1, …, n−1 (the head list of all heads in order).
func identity(n int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = i
	}
	return l
}

// attnEntries builds the entry table of attn*.comp for seqs (query rows
// qRow = Row+t; keys from kvRow0[i]) with probabilities at pBase[i].
func attnEntries(seqs []backend.AttnSeq, kvRow0, pBase []int) []int32 {
	var e []int32
	for i, s := range seqs {
		for t := 0; t < s.T; t++ {
			e = append(e, int32(s.Row+t), int32(kvRow0[i]), int32(s.Pos), int32(t), int32(s.T), int32(pBase[i]))
		}
	}
	return e
}

// attnDispatch records one attention-family program over entries (6 ints
// each, in the host arena at ev), chunked by the workgroup-count limit in y.
func (d *Device) attnDispatch(prog string, views []View, entIdx int, ev View, rest []byte, gx, nent int) error {
	lim := d.props.Limits.MaxComputeWorkGroupCount[1]
	for e0 := 0; e0 < nent; e0 += lim {
		ne := min(lim, nent-e0)
		vs := append([]View(nil), views...)
		vs[entIdx] = sub(ev, 6*e0, 6*ne)
		if err := d.dispatch(prog, vs, rest, gx, ne, 1); err != nil {
			return err
		}
	}
	return nil
}

// Attention: causal softmax(q·kᵀ/√D)·v per sequence into out.
func (x *Dev) Attention(out, q, k, v backend.View, seqs []backend.AttnSeq, h backend.Heads) {
	x.op("Attention", func() error {
		const op = "Attention"
		kvmap, err := headsMap(op, h)
		if err != nil {
			return err
		}
		qs, kvs := h.NH*h.D, h.NKV*h.D
		qRows, kvRows := 0, 0
		var own, gat []backend.AttnSeq
		for i, s := range seqs {
			if s.Row < 0 || s.T < 0 || s.Pos < 0 {
				return fmt.Errorf("vulkan: %s: sequence %d has row %d, T %d, pos %d", op, i, s.Row, s.T, s.Pos)
			}
			if s.T == 0 {
				continue
			}
			qRows = max(qRows, s.Row+s.T)
			if s.K == nil && s.V == nil {
				if s.Pos != 0 {
					return fmt.Errorf("vulkan: %s: sequence %d at position %d reads its own rows (no K/V parts)", op, i, s.Pos)
				}
				kvRows = max(kvRows, s.Row+s.T)
				own = append(own, s)
				continue
			}
			for _, parts := range [][]backend.View{s.K, s.V} {
				rows := 0
				for j, p := range parts {
					if p.N%kvs != 0 {
						return fmt.Errorf("vulkan: %s: sequence %d: K/V part %d of %d elements is not whole rows of %d", op, i, j, p.N, kvs)
					}
					rows += p.N / kvs
				}
				if rows != s.Pos+s.T {
					return fmt.Errorf("vulkan: %s: sequence %d: K/V parts hold %d rows, want Pos+T = %d", op, i, rows, s.Pos+s.T)
				}
			}
			gat = append(gat, s)
		}
		if qRows == 0 {
			return nil
		}
		qv, err := x.view(op, "q", q, qRows*qs, false)
		if err != nil {
			return err
		}
		ov, err := x.view(op, "out", out, qRows*qs, false)
		if err != nil {
			return err
		}
		var kv, vv View
		if len(own) > 0 {
			if kv, err = x.view(op, "k", k, kvRows*kvs, false); err != nil {
				return err
			}
			if vv, err = x.view(op, "v", v, kvRows*kvs, false); err != nil {
				return err
			}
		}
		// Parts and probability outputs.
		var kParts, vParts [][]View
		var probs []View
		probsOf := func(s backend.AttnSeq, i int) error {
			pv, err := x.view(op, fmt.Sprintf("Probs of sequence %d", i), s.Probs, h.NH*s.T*(s.Pos+s.T), true)
			probs = append(probs, pv)
			return err
		}
		for i, s := range own {
			if err := probsOf(s, i); err != nil {
				return err
			}
		}
		for i, s := range gat {
			if err := probsOf(s, len(own)+i); err != nil {
				return err
			}
			var kp, vp []View
			for j, p := range s.K {
				pv, err := x.view(op, fmt.Sprintf("K part %d of sequence %d", j, i), p, p.N, false)
				if err != nil {
					return err
				}
				kp = append(kp, pv)
			}
			for j, p := range s.V {
				pv, err := x.view(op, fmt.Sprintf("V part %d of sequence %d", j, i), p, p.N, false)
				if err != nil {
					return err
				}
				vp = append(vp, pv)
			}
			kParts, vParts = append(kParts, kp), append(vParts, vp)
		}
		return x.locked(func() error {
			return x.d.attention(op, qv, ov, kv, vv, own, gat, kParts, vParts, probs, kvmap, h)
		})
	})
}

// attnUnit is entries of the attention forward that go into one dispatch
// together: one query row of one sequence (a compact row of probabilities,
// last+1 per head) or a whole sequence with saved probabilities (its block
// [NH × T × S]). pBase of its entries is relative to the unit.
type attnUnit struct {
	ent            []int32
	np             int // probability floats
	q0, q1, k0, k1 int // rows of q/out and of K/V it reads
	seq, t         int // copy-out: the sequence (−1: none) and, for a compact row of a saved block, its query
}

// attention records the forward of Dev.Attention: units (see attnUnit) in
// chunks that each bind a window of q/out, of K/V (own or gathered) and of
// the probability scratch of at most one binding, the entries rebased to
// the windows. Every unit's arithmetic is unchanged by the chunking, so
// the results are bitwise those of one dispatch. Saved probabilities are
// computed in scratch and copied out after their chunk (copies have no
// binding limit); a sequence whose block [NH × T × S] exceeds a binding is
// computed as compact rows (the same bits: the causal tail is zeros) and
// copied row by row into its zeroed block. Not split: one query row's
// keys, i.e. a sequence's K/V rows 0…Pos+t of one query, must fit one
// binding, as must NH·(Pos+t+1) probabilities. The caller holds d.mu.
func (d *Device) attention(op string, qv, ov, kv, vv View, own, gat []backend.AttnSeq, kParts, vParts [][]View,
	probs []View, kvmap []int, h backend.Heads) error {
	qs, kvs := h.NH*h.D, h.NKV*h.D
	lim := d.maxElems(F32)
	capP := min(lim, d.attnCap)
	if qs > lim {
		return fmt.Errorf("vulkan: %s: one query row of %d floats exceeds maxStorageBufferRange (%d bytes) of %s", op, qs, d.maxBind, d.props.DriverName)
	}
	all := append(append([]backend.AttnSeq(nil), own...), gat...)
	kvRow := make([]int, len(all))
	ngat := 0
	for i, s := range all {
		if i < len(own) {
			kvRow[i] = s.Row
		} else {
			kvRow[i] = ngat / kvs
			ngat += (s.Pos + s.T) * kvs
		}
	}
	type chunk struct {
		units          []attnUnit
		gat, full      bool
		np             int
		q0, q1, k0, k1 int
		nent           int
	}
	var chunks []chunk
	add := func(u attnUnit, gat, full bool) {
		if k := len(chunks) - 1; k >= 0 {
			c := &chunks[k]
			q0, q1, k0, k1 := min(c.q0, u.q0), max(c.q1, u.q1), min(c.k0, u.k0), max(c.k1, u.k1)
			// probabilities within the scratch cap (one unit may exceed
			// it, up to a binding)
			if c.gat == gat && c.full == full && (q1-q0)*qs <= lim && (k1-k0)*kvs <= lim && c.np+u.np <= capP {
				c.units = append(c.units, u)
				c.q0, c.q1, c.k0, c.k1, c.np, c.nent = q0, q1, k0, k1, c.np+u.np, c.nent+len(u.ent)/6
				return
			}
		}
		chunks = append(chunks, chunk{[]attnUnit{u}, gat, full, u.np, u.q0, u.q1, u.k0, u.k1, len(u.ent) / 6})
	}
	var big []int                     // sequences with saved probabilities computed as compact rows
	for pass := 0; pass < 2; pass++ { // own K/V, gathered K/V
		lo, hi := 0, len(own)
		if pass == 1 {
			lo, hi = len(own), len(all)
		}
		var fulls []attnUnit
		for i := lo; i < hi; i++ {
			s := all[i]
			S := s.Pos + s.T
			if probs[i].B != nil {
				np := h.NH * s.T * S
				if np <= capP && s.T*qs <= lim && S*kvs <= lim {
					u := attnUnit{np: np, q0: s.Row, q1: s.Row + s.T, k0: kvRow[i], k1: kvRow[i] + S, seq: i}
					for t := 0; t < s.T; t++ {
						u.ent = append(u.ent, int32(s.Row+t), int32(kvRow[i]), int32(s.Pos), int32(t), int32(s.T), 0)
					}
					fulls = append(fulls, u)
					continue
				}
				big = append(big, i)
			}
			for t := 0; t < s.T; t++ {
				last := s.Pos + t
				if (last+1)*kvs > lim || h.NH*(last+1) > lim {
					return fmt.Errorf("vulkan: %s: sequence %d: query %d reads K/V rows 0…%d (%d floats each of K and V) and %d probabilities, over one binding (maxStorageBufferRange %d bytes of %s, %d floats); attention does not split one query's keys",
						op, i, t, last, (last+1)*kvs, h.NH*(last+1), d.maxBind, d.props.DriverName, lim)
				}
				u := attnUnit{np: h.NH * (last + 1), q0: s.Row + t, q1: s.Row + t + 1, k0: kvRow[i], k1: kvRow[i] + last + 1, seq: -1, t: t}
				if probs[i].B != nil {
					u.seq = i
				}
				u.ent = []int32{int32(s.Row + t), int32(kvRow[i]), int32(last), 0, 1, 0}
				add(u, pass == 1, false)
			}
		}
		for _, u := range fulls {
			add(u, pass == 1, true)
		}
	}
	sets, nent, npFull, npCompact := 0, 0, 0, 0
	for _, c := range chunks {
		sets += 1 + c.nent/d.props.Limits.MaxComputeWorkGroupCount[1]
		nent += c.nent
		if c.full {
			npFull = max(npFull, c.np)
		} else {
			npCompact = max(npCompact, c.np)
		}
	}
	if err := d.prepare(sets, 4*(2*h.NH+6*nent+64), 4*(npFull+npCompact+2*ngat+64)); err != nil {
		return err
	}
	mv, err := d.hostData(intsBytes(append(append([]int(nil), kvmap...), identity(h.NH)...))) // kvmap, head list
	if err != nil {
		return err
	}
	pf, err := d.take(&d.scratch, npFull)
	if err != nil {
		return err
	}
	pcv, err := d.take(&d.scratch, npCompact)
	if err != nil {
		return err
	}
	var gk, gv View
	if len(gat) > 0 {
		if gk, err = d.take(&d.scratch, ngat); err != nil {
			return err
		}
		if gv, err = d.take(&d.scratch, ngat); err != nil {
			return err
		}
		for i := range gat {
			for _, c := range []struct {
				dst   View
				parts []View
			}{{gk, kParts[i]}, {gv, vParts[i]}} {
				off := kvRow[len(own)+i] * kvs
				for _, p := range c.parts {
					if err := d.cmdCopy(sub(c.dst, off, p.N), p, p.N); err != nil {
						return err
					}
					off += p.N
				}
			}
		}
	}
	for _, i := range big {
		if err := d.cmdFill(probs[i], probs[i].N); err != nil {
			return err
		}
	}
	scale := float32(1 / math.Sqrt(float64(h.D)))
	for _, c := range chunks {
		ent := make([]int32, 0, 6*c.nent)
		base := 0
		for _, u := range c.units {
			for e := 0; e < len(u.ent); e += 6 {
				ent = append(ent, u.ent[e]-int32(c.q0), u.ent[e+1]-int32(c.k0), u.ent[e+2], u.ent[e+3], u.ent[e+4], u.ent[e+5]+int32(base))
			}
			base += u.np
		}
		ev, err := d.hostData(int32Bytes(ent))
		if err != nil {
			return err
		}
		kb, vb, pb := kv, vv, pcv
		if c.gat {
			kb, vb = gk, gv
		}
		if c.full {
			pb = pf
		}
		qw, kw := sub(qv, c.q0*qs, (c.q1-c.q0)*qs), sub(kb, c.k0*kvs, (c.k1-c.k0)*kvs)
		views := []View{qw, kw, sub(vb, c.k0*kvs, (c.k1-c.k0)*kvs), mv, {}, sub(pb, 0, c.np), sub(ov, c.q0*qs, (c.q1-c.q0)*qs)}
		if err := d.attnDispatch("attn", views, 4, ev, pc(h.NH, h.NKV, h.D, 0, scale, h.NH), h.NH, c.nent); err != nil {
			return err
		}
		// Saved probabilities out of the scratch (reused by the next chunk
		// after the barrier that follows the copies).
		var regs []core1_0.BufferCopy
		var dst *Buffer
		base = 0
		for _, u := range c.units {
			if u.seq >= 0 {
				pr := probs[u.seq]
				if c.full {
					if err := d.cmdCopy(pr, sub(pb, base, u.np), u.np); err != nil {
						return err
					}
				} else {
					s := all[u.seq]
					row, S := s.Pos+u.t+1, s.Pos+s.T
					for hh := 0; hh < h.NH; hh++ {
						if dst != nil && dst != pr.B {
							if err := d.cmdCopyRegions(dst, pb.B, regs); err != nil {
								return err
							}
							regs = regs[:0]
						}
						dst = pr.B
						regs = append(regs, core1_0.BufferCopy{SrcOffset: 4 * (pb.Off + base + hh*row),
							DstOffset: 4 * (pr.Off + (hh*s.T+u.t)*S), Size: 4 * row})
					}
				}
			}
			base += u.np
		}
		if len(regs) > 0 {
			if err := d.cmdCopyRegions(dst, pb.B, regs); err != nil {
				return err
			}
		}
	}
	return nil
}

// AttentionBackward writes dq, dk, dv from dout for sequences with their own
// keys (Pos 0); probabilities come from Probs when every sequence has them,
// else all are recomputed with the forward program (the same bits).
func (x *Dev) AttentionBackward(dq, dk, dv, dout, q, k, v backend.View, seqs []backend.AttnSeq, h backend.Heads) {
	x.op("AttentionBackward", func() error {
		const op = "AttentionBackward"
		kvmap, err := headsMap(op, h)
		if err != nil {
			return err
		}
		qs, kvs := h.NH*h.D, h.NKV*h.D
		rows := 0
		var act []backend.AttnSeq
		for i, s := range seqs {
			if s.Row < 0 || s.T < 0 || s.Pos != 0 || s.K != nil || s.V != nil {
				return fmt.Errorf("vulkan: %s: sequence %d (row %d, T %d, pos %d) must have its own keys at position 0", op, i, s.Row, s.T, s.Pos)
			}
			if s.T > 0 {
				rows = max(rows, s.Row+s.T)
				act = append(act, s)
			}
		}
		if rows == 0 {
			return nil
		}
		var vs [7]View
		for i, c := range []struct {
			name string
			v    backend.View
			n    int
		}{{"dq", dq, rows * qs}, {"dk", dk, rows * kvs}, {"dv", dv, rows * kvs}, {"dout", dout, rows * qs},
			{"q", q, rows * qs}, {"k", k, rows * kvs}, {"v", v, rows * kvs}} {
			vv, err := x.view(op, c.name, c.v, c.n, false)
			if err != nil {
				return err
			}
			vs[i] = vv
		}
		dqv0, dkv0, dvv0, dov0, qv0, kv0, vv0 := vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], vs[6]
		have := true
		probs := make([]View, len(act))
		for i, s := range act {
			pv, err := x.view(op, fmt.Sprintf("Probs of sequence %d", i), s.Probs, h.NH*s.T*s.T, true)
			if err != nil {
				return err
			}
			probs[i], have = pv, have && pv.B != nil
		}
		// query heads of each K/V head, ascending: CSR start[NKV+1], heads[NH]
		count := make([]int, h.NKV+1)
		for _, kh := range kvmap {
			count[kh+1]++
		}
		for g := 1; g <= h.NKV; g++ {
			count[g] += count[g-1]
		}
		heads := make([]int, h.NH)
		fill := append([]int(nil), count[:h.NKV]...)
		for hh, kh := range kvmap {
			heads[fill[kh]] = hh
			fill[kh]++
		}
		grp := append(count, heads...)
		return x.locked(func() error {
			d := x.d
			// Sequences in groups whose probabilities (and ds) fit
			// attnCap floats; the groups run one after another and reuse
			// the same two scratch regions (the barrier after each
			// dispatch orders the reuse).
			// A group also binds windows of the rows it reads and writes
			// (q, dq, dout; k, v, dk, dv), rows r0…r1−1, its entries
			// rebased to r0. A sequence whose probabilities [NH × T × T]
			// exceed one binding runs in groups of K/V heads kh0… (nkv),
			// each with all its query heads (nh, listed in grp order from
			// g0; their probabilities copied head by head): every sum keeps
			// its order, so the results are bitwise those of one group.
			// Not split: one sequence's rows, and one K/V head's
			// probabilities.
			type group struct {
				seqs             []backend.AttnSeq
				probs            []View
				np, nent         int
				pBase, kv        []int
				r0, r1           int
				g0, nh, kh0, nkv int
				list             bool
			}
			limY := d.props.Limits.MaxComputeWorkGroupCount[1]
			lim := d.maxElems(F32)
			capP := min(lim, d.attnCap)
			var groups []*group
			maxNP, nent, sets := 0, 0, 0
			for i, s := range act {
				n := h.NH * s.T * s.T
				if s.T*max(qs, kvs) > lim {
					return fmt.Errorf("vulkan: %s: sequence %d of %d tokens has rows of %d floats, over one binding (maxStorageBufferRange %d bytes of %s, %d floats); the attention backward does not split one sequence's rows",
						op, i, s.T, s.T*max(qs, kvs), d.maxBind, d.props.DriverName, lim)
				}
				if n > lim {
					for kh := 0; kh < h.NKV; {
						g := &group{r0: s.Row, r1: s.Row + s.T, g0: count[kh], kh0: kh, list: true,
							seqs: []backend.AttnSeq{s}, probs: []View{probs[i]}, pBase: []int{0}, kv: []int{s.Row}, nent: s.T}
						// K/V heads while their probabilities fit the
						// scratch cap (one K/V head up to a binding)
						for kh < h.NKV && (g.nkv == 0 || (count[kh+1]-g.g0)*s.T*s.T <= capP) {
							kh++
							g.nkv++
						}
						g.nh = count[kh] - g.g0
						g.np = g.nh * s.T * s.T
						if g.np > lim {
							return fmt.Errorf("vulkan: %s: sequence %d of %d tokens: the %d query heads of K/V head %d have %d probabilities, over one binding (maxStorageBufferRange %d bytes of %s, %d floats); the attention backward does not split one K/V head",
								op, i, s.T, g.nh, g.kh0, g.np, d.maxBind, d.props.DriverName, lim)
						}
						groups = append(groups, g)
						maxNP = max(maxNP, g.np)
						nent += s.T
					}
					groups = append(groups, nil) // the next sequence starts a group
					continue
				}
				if k := len(groups) - 1; k < 0 || groups[k] == nil || groups[k].np+n > capP ||
					(max(groups[k].r1, s.Row+s.T)-min(groups[k].r0, s.Row))*max(qs, kvs) > lim {
					groups = append(groups, &group{r0: s.Row, r1: s.Row + s.T, nh: h.NH, nkv: h.NKV})
				}
				g := groups[len(groups)-1]
				g.r0, g.r1 = min(g.r0, s.Row), max(g.r1, s.Row+s.T)
				g.pBase, g.kv = append(g.pBase, g.np), append(g.kv, s.Row)
				g.seqs, g.probs = append(g.seqs, s), append(g.probs, probs[i])
				g.np += n
				g.nent += s.T
				maxNP = max(maxNP, g.np)
				nent += s.T
			}
			var gs []*group
			for _, g := range groups {
				if g != nil {
					gs = append(gs, g)
					sets += 4 * (1 + g.nent/limY)
				}
			}
			groups = gs
			if err := d.prepare(sets, 4*(3*len(kvmap)+len(grp)+6*nent+64), 4*(2*maxNP+64)); err != nil {
				return err
			}
			// kvmap, then head lists: the identity (at NH) and the query
			// heads by K/V head (at 2·NH)
			mv, err := d.hostData(intsBytes(append(append(append([]int(nil), kvmap...), identity(h.NH)...), heads...)))
			if err != nil {
				return err
			}
			gv, err := d.hostData(intsBytes(grp))
			if err != nil {
				return err
			}
			pv, err := d.take(&d.scratch, maxNP)
			if err != nil {
				return err
			}
			dsv, err := d.take(&d.scratch, maxNP)
			if err != nil {
				return err
			}
			if err := d.fits(op, "probabilities", pv); err != nil {
				return err
			}
			scale := float32(1 / math.Sqrt(float64(h.D)))
			for _, g := range groups {
				ent := attnEntries(g.seqs, g.kv, g.pBase)
				for e := 0; e < len(ent); e += 6 {
					ent[e] -= int32(g.r0)
					ent[e+1] -= int32(g.r0)
				}
				ev, err := d.hostData(int32Bytes(ent))
				if err != nil {
					return err
				}
				nr := g.r1 - g.r0
				qw := func(v View) View { return sub(v, g.r0*qs, nr*qs) }
				kw := func(v View) View { return sub(v, g.r0*kvs, nr*kvs) }
				dqv, dkv, dvv, dov, qv, kv, vv := qw(dqv0), kw(dkv0), kw(dvv0), qw(dov0), qw(qv0), kw(kv0), kw(vv0)
				L, list := h.NH, 0
				if g.list {
					L, list = 2*h.NH+g.g0, 1
				}
				if have {
					for i, s := range g.seqs {
						n := h.NH * s.T * s.T
						if !g.list {
							if err := d.cmdCopy(sub(pv, g.pBase[i], n), g.probs[i], n); err != nil {
								return err
							}
							continue
						}
						tt := s.T * s.T
						for hl := 0; hl < g.nh; hl++ {
							if err := d.cmdCopy(sub(pv, g.pBase[i]+hl*tt, tt), sub(g.probs[i], heads[g.g0+hl]*tt, tt), tt); err != nil {
								return err
							}
						}
					}
				} else if err := d.attnDispatch("attn", []View{qv, kv, vv, mv, {}, pv, {}}, 4, ev, pc(h.NH, h.NKV, h.D, 1, scale, L), g.nh, g.nent); err != nil {
					return err
				}
				if err := d.attnDispatch("attn_ds", []View{dov, vv, mv, {}, pv, dsv}, 3, ev, pc(h.NH, h.NKV, h.D, scale, L), g.nh, g.nent); err != nil {
					return err
				}
				if err := d.attnDispatch("attn_dq", []View{dsv, kv, mv, {}, dqv}, 3, ev, pc(h.NH, h.NKV, h.D, L, g.nh), (g.nh*h.D+255)/256, g.nent); err != nil {
					return err
				}
				if err := d.attnDispatch("attn_dkv", []View{dsv, pv, qv, dov, gv, {}, dkv, dvv}, 5, ev, pc(h.NH, h.NKV, h.D, g.g0, g.kh0, g.nkv, list), (g.nkv*h.D+255)/256, g.nent); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// The losses.

func (x *Dev) loss(op, prog string, dlogits, logits backend.View, targets []int, vocab int, weight float64,
	extra func(d *Device, rows int) ([]View, []byte, int, error), extraHost int) (float64, error) {
	if err := x.takeErr(); err != nil {
		return 0, err
	}
	rows := len(targets)
	if vocab <= 0 {
		return 0, fmt.Errorf("vulkan: %s: vocabulary %d must be positive", op, vocab)
	}
	n := 0
	for i, t := range targets {
		if t < -1 || t >= vocab {
			return 0, fmt.Errorf("vulkan: %s: target %d of row %d outside [-1, %d)", op, t, i, vocab)
		}
		if t >= 0 {
			n++
		}
	}
	zv, err := x.view(op, "logits", logits, rows*vocab, false)
	if err != nil {
		return 0, err
	}
	dz, err := x.view(op, "dlogits", dlogits, rows*vocab, true)
	if err != nil {
		return 0, err
	}
	if rows == 0 {
		return 0, nil
	}
	scale := 0.0
	if n > 0 {
		scale = weight / float64(n)
	}
	var sum float64
	err = x.locked(func() error {
		d := x.d
		rc, err := d.rowChunk(op, vocab)
		if err != nil {
			return err
		}
		nch := (rows + rc - 1) / rc
		if err := d.prepare(nch, 4*(2*rows+64)+extraHost, 0); err != nil {
			return err
		}
		tv, err := d.hostData(intsBytes(targets))
		if err != nil {
			return err
		}
		lv, err := d.take(&d.host, rows)
		if err != nil {
			return err
		}
		ev, words, per, err := extra(d, rows)
		if err != nil {
			return err
		}
		for r0 := 0; r0 < rows; r0 += rc {
			nr := min(rc, rows-r0)
			views := []View{sub(zv, r0*vocab, nr*vocab), sub(tv, r0, nr), sub(dz, r0*vocab, nr*vocab), sub(lv, r0, nr)}
			for _, e := range ev {
				if per == 0 { // whole-row operand (teacher logits)
					views = append(views, sub(e, r0*vocab, nr*vocab))
				} else {
					views = append(views, sub(e, r0*per, nr*per))
				}
			}
			rest := append(pc(nr, vocab, dz.B != nil), words...)
			rest = append(rest, pc(float32(scale))...)
			if err := d.dispatch(prog, views, rest, nr, 1, 1); err != nil {
				return err
			}
		}
		if err := d.flush(); err != nil {
			return err
		}
		if x.flagged() { // an earlier AdamW met a non-finite gradient
			return backend.ErrNonFinite
		}
		rl := unsafe.Slice((*float32)(unsafe.Add(d.host.b.ptr, 4*lv.Off)), rows)
		for i, t := range targets {
			if t >= 0 {
				sum += float64(rl[i])
			}
		}
		return nil
	})
	if err != nil {
		x.record(err)
		return 0, x.takeErr()
	}
	if n == 0 {
		return 0, nil
	}
	return sum / float64(n), nil
}

// CrossEntropy: mean next-token cross-entropy over rows with a target;
// dlogits (optional) is overwritten with weight·∂loss/∂logits (0 on rows
// without a target).
func (x *Dev) CrossEntropy(dlogits, logits backend.View, targets []int, vocab int, weight float64) (float64, error) {
	return x.loss("CrossEntropy", "xent_set", dlogits, logits, targets, vocab, weight,
		func(*Device, int) ([]View, []byte, int, error) { return nil, nil, 0, nil }, 0)
}

// KL: mean KL(softmax(teacher) ‖ softmax(logits)) over rows with a target;
// weight·gradient is added into dlogits.
func (x *Dev) KL(dlogits, logits, teacher backend.View, targets []int, vocab int, weight float64) (float64, error) {
	if err := x.takeErr(); err != nil {
		return 0, err
	}
	tv, err := x.view("KL", "teacher", teacher, len(targets)*vocab, false)
	if err != nil {
		return 0, err
	}
	return x.loss("KL", "kl", dlogits, logits, targets, vocab, weight,
		func(*Device, int) ([]View, []byte, int, error) { return []View{tv}, nil, 0, nil }, 0)
}

// SparseKL: KL over each row's k teacher entries idx/val [rows × k], both
// sides renormalised over them; weight·gradient is added into dlogits at
// idx (the entries of a row must be distinct).
func (x *Dev) SparseKL(dlogits, logits backend.View, idx []int32, val []float32, k int, targets []int, vocab int, weight float64) (float64, error) {
	if err := x.takeErr(); err != nil {
		return 0, err
	}
	rows := len(targets)
	if k <= 0 || len(idx) < rows*k || len(val) < rows*k {
		return 0, fmt.Errorf("vulkan: SparseKL: k %d with %d indices and %d values for %d rows", k, len(idx), len(val), rows)
	}
	for r, t := range targets {
		if t < 0 {
			continue
		}
		for i, c := range idx[r*k : (r+1)*k] {
			if c < 0 || int(c) >= vocab {
				return 0, fmt.Errorf("vulkan: SparseKL: index %d (row %d, entry %d) outside the vocabulary of %d", c, r, i, vocab)
			}
		}
	}
	return x.loss("SparseKL", "sparse_kl", dlogits, logits, targets, vocab, weight,
		func(d *Device, rows int) ([]View, []byte, int, error) {
			iv, err := d.hostData(int32Bytes(idx[:rows*k]))
			if err != nil {
				return nil, nil, 0, err
			}
			vv, err := d.hostData(float32Bytes(val[:rows*k]))
			if err != nil {
				return nil, nil, 0, err
			}
			return []View{iv, vv}, pc(k), k, nil
		}, 8*rows*k+2*arenaAlign)
}
