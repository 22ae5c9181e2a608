package nn

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/darwinlm/darwinlm-go/backend"
)

// Host is the CPU implementation of backend.Device: a buffer is a Go slice
// and every operation runs at once, on the calling goroutine (fanning out
// like the kernels it calls), as exactly the kernel the host code ran
// before the device interface (MatNT, RMSNormForwardT, AttentionForwardT,
// CrossEntropyFast, AdamW, ...). So a computation moved onto a Host gives
// bitwise the results it gave before, independent of the worker count.
//
// Operands are checked before anything runs; a bad one (a view outside its
// buffer, a buffer of another device, a shape that does not fit) becomes the
// device's sticky error: later operations are skipped until Sync (or a
// Download or loss) returns it. Nothing panics on bad operands. A Host may
// be used from several goroutines for operations on disjoint outputs.
type Host[F Float] struct {
	be      backend.Backend
	workers int
	f32     bool

	pending atomic.Bool // err != nil
	failed  atomic.Bool // err is a hard error: skip operations
	mu      sync.Mutex
	err     error

	gather sync.Pool // *[]F: K/V of multi-part attention sequences
}

// NewHost returns the host device computing in F on the backend be (be
// runs the float32 products; it may be nil for float64, whose products are
// plain loops).
func NewHost[F Float](be backend.Backend) *Host[F] {
	var z F
	_, f32 := any(z).(float32)
	return &Host[F]{be: be, workers: BackendWorkers(be), f32: f32}
}

// DeviceFor returns the float32 device of be: the backend's own device when
// it has one (Vulkan), else a new Host on be. Each call returns a new Host,
// so independent users (e.g. the fine-tunings of a pool) do not share a
// sticky error; a Host holds no other state.
func DeviceFor(be backend.Backend) backend.Device[float32] {
	if d, ok := be.(interface {
		Float32Device() backend.Device[float32]
	}); ok {
		return d.Float32Device()
	}
	return NewHost[float32](be)
}

// Backend is the backend h runs its products on.
func (h *Host[F]) Backend() backend.Backend { return h.be }

// hostBuf is a buffer of a Host: a Go slice (nil once freed).
type hostBuf[F Float] struct{ data []F }

func (b *hostBuf[F]) Len() int { return len(b.data) }

// Name is the backend's name ("host" without one).
func (h *Host[F]) Name() string {
	if h.be == nil {
		return "host"
	}
	return h.be.Name()
}

// fail records err unless an error is pending; ErrNonFinite does not stop
// later operations (a step is applied in full, as the host code did).
func (h *Host[F]) fail(err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
		h.pending.Store(true)
	}
	if err != backend.ErrNonFinite {
		h.failed.Store(true)
	}
	h.mu.Unlock()
}

// failf records a formatted error.
func (h *Host[F]) failf(format string, args ...any) { h.fail(fmt.Errorf(format, args...)) }

// skip reports whether operations are skipped after an error.
func (h *Host[F]) skip() bool { return h.failed.Load() }

// take returns and clears the pending error.
func (h *Host[F]) take() error {
	if !h.pending.Load() {
		return nil
	}
	h.mu.Lock()
	err := h.err
	h.err = nil
	h.pending.Store(false)
	h.failed.Store(false)
	h.mu.Unlock()
	return err
}

// slice returns the n elements of v, or records why it cannot and returns
// ok = false. A negative n (an overflowing or negative shape) is an error.
func (h *Host[F]) slice(op, name string, v backend.View, n int) ([]F, bool) {
	// The common case inline: a buffer of this device holding the view.
	if b, ok := v.Buf.(*hostBuf[F]); ok && n >= 0 && v.Off >= 0 && v.N >= n && v.Off+v.N <= len(b.data) {
		return b.data[v.Off : v.Off+n : v.Off+n], true
	}
	if n < 0 {
		h.failf("%s: %s: negative or overflowing size", op, name)
		return nil, false
	}
	if err := v.Check(op, name, n); err != nil {
		h.fail(err)
		return nil, false
	}
	if v.Buf == nil { // absent and not needed
		return nil, true
	}
	b, ok := v.Buf.(*hostBuf[F])
	if !ok {
		h.failf("%s: %s is not a buffer of this device (%T)", op, name, v.Buf)
		return nil, false
	}
	return b.data[v.Off : v.Off+n : v.Off+n], true
}

// opt is slice for an optional operand: absent gives nil.
func (h *Host[F]) opt(op, name string, v backend.View, n int) ([]F, bool) {
	if v.Nil() {
		return nil, true
	}
	return h.slice(op, name, v, n)
}

// mul is a·b for sizes, −1 when either is negative or the product
// overflows (slice then reports it).
func mul(a, b int) int {
	if a < 0 || b < 0 {
		return -1
	}
	if a != 0 && b > (1<<62)/a {
		return -1
	}
	return a * b
}

// dims records an error unless every dimension is ≥ 0.
func (h *Host[F]) dims(op string, d ...int) bool {
	for _, x := range d {
		if x < 0 {
			h.failf("%s: negative dimension %d", op, x)
			return false
		}
	}
	return true
}

// needBE records an error when a float32 product has no backend.
func (h *Host[F]) needBE(op string) bool {
	if h.f32 && h.be == nil {
		h.failf("%s: the host device has no backend for float32 products", op)
		return false
	}
	return true
}

// Alloc returns a zeroed buffer of n elements.
func (h *Host[F]) Alloc(n int) (backend.View, error) {
	if n < 0 {
		return backend.View{}, fmt.Errorf("Alloc: negative size %d", n)
	}
	return backend.View{Buf: &hostBuf[F]{data: make([]F, n)}, N: n}, nil
}

// Free drops the slice behind v; later uses of its views are errors (the
// buffer has 0 elements). A resident slice itself is left alone.
func (h *Host[F]) Free(v backend.View) {
	if b, ok := v.Buf.(*hostBuf[F]); ok {
		b.data = nil
	}
}

// Upload copies src into dst at once.
func (h *Host[F]) Upload(dst backend.View, src []F) error {
	d, err := h.window("Upload", "dst", dst, len(src))
	if err != nil {
		return err
	}
	copy(d, src)
	return nil
}

// Download copies src into dst; a pending error is returned (and cleared)
// instead.
func (h *Host[F]) Download(dst []F, src backend.View) error {
	if err := h.take(); err != nil {
		return err
	}
	s, err := h.window("Download", "src", src, len(dst))
	if err != nil {
		return err
	}
	copy(dst, s)
	return nil
}

// window is the first n elements of v for Upload and Download, or an error
// unless v is a view of a host buffer holding them (no buffer is needed for
// n = 0).
func (h *Host[F]) window(op, name string, v backend.View, n int) ([]F, error) {
	if err := v.Check(op, name, n); err != nil {
		return nil, err
	}
	b, ok := v.Buf.(*hostBuf[F])
	if !ok {
		if n == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %s is not a buffer of this device (%T)", op, name, v.Buf)
	}
	return b.data[v.Off : v.Off+n], nil
}

// Resident wraps host itself (no copy).
func (h *Host[F]) Resident(host []F) (backend.View, error) {
	return backend.View{Buf: &hostBuf[F]{data: host}, N: len(host)}, nil
}

// Host returns the slice window of v.
func (h *Host[F]) Host(v backend.View) ([]F, bool) {
	b, ok := v.Buf.(*hostBuf[F])
	if !ok || v.Check("Host", "v", v.N) != nil {
		return nil, false
	}
	return b.data[v.Off : v.Off+v.N : v.Off+v.N], true
}

// Sync returns and clears the pending error (operations have already run).
func (h *Host[F]) Sync() error { return h.take() }

func (h *Host[F]) Zero(v backend.View) {
	if h.skip() {
		return
	}
	if s, ok := h.slice("Zero", "v", v, v.N); ok {
		clear(s)
	}
}

func (h *Host[F]) Copy(dst, src backend.View) {
	if h.skip() {
		return
	}
	if d, s, ok := h.pair("Copy", dst, src); ok {
		copy(d, s)
	}
}

// pair checks the operands of an elementwise op on two views of one length.
func (h *Host[F]) pair(op string, dst, src backend.View) (d, s []F, ok bool) {
	if dst.N != src.N {
		h.failf("%s: dst has %d elements, src %d", op, dst.N, src.N)
		return nil, nil, false
	}
	d, ok1 := h.slice(op, "dst", dst, dst.N)
	s, ok2 := h.slice(op, "src", src, src.N)
	return d, s, ok1 && ok2
}

// Add is the residual add of the layer forward (dst += src in order).
func (h *Host[F]) Add(dst, src backend.View) {
	if h.skip() {
		return
	}
	if d, s, ok := h.pair("Add", dst, src); ok {
		s = s[:len(d)]
		for i := range d {
			d[i] += s[i]
		}
	}
}

// mat checks the operands of a product: c [cm × cn], a and b of na and nb
// elements.
func (h *Host[F]) mat(op string, c, a, b backend.View, m, n, k int) (cs, as, bs []F, ok bool) {
	if !h.dims(op, m, n, k) || !h.needBE(op) {
		return nil, nil, nil, false
	}
	cs, ok1 := h.slice(op, "c", c, mul(m, n))
	as, ok2 := h.slice(op, "a", a, mul(m, k))
	bs, ok3 := h.slice(op, "b", b, mul(n, k))
	return cs, as, bs, ok1 && ok2 && ok3
}

func (h *Host[F]) MatNT(c, a, b backend.View, m, n, k int, acc bool) {
	if h.skip() {
		return
	}
	if cs, as, bs, ok := h.mat("MatNT", c, a, b, m, n, k); ok {
		MatNT(h.be, cs, as, bs, m, n, k, acc)
	}
}

func (h *Host[F]) MatNN(c, a, b backend.View, m, n, k int, acc bool) {
	if h.skip() {
		return
	}
	if cs, as, bs, ok := h.mat("MatNN", c, a, b, m, n, k); ok {
		MatNN(h.be, cs, as, bs, m, n, k, acc)
	}
}

func (h *Host[F]) MatTN(c, a, b backend.View, m, n, k int, acc bool) {
	if h.skip() {
		return
	}
	if cs, as, bs, ok := h.mat("MatTN", c, a, b, m, n, k); ok {
		MatTN(h.be, cs, as, bs, m, n, k, acc)
	}
}

// Syrk is the backend's SyrkTN for float32; float64 sums the products in p
// order.
func (h *Host[F]) Syrk(hv, x backend.View, n, k int) {
	if h.skip() || !h.dims("Syrk", n, k) || !h.needBE("Syrk") {
		return
	}
	hs, ok1 := h.slice("Syrk", "h", hv, mul(n, n))
	xs, ok2 := h.slice("Syrk", "x", x, mul(k, n))
	if !ok1 || !ok2 {
		return
	}
	if h32, ok := any(hs).([]float32); ok {
		h.be.SyrkTN(h32, any(xs).([]float32), n, k)
		return
	}
	ParallelFor(n, func(i int) {
		for j := 0; j < n; j++ {
			var s F
			for p := 0; p < k; p++ {
				s += xs[p*n+i] * xs[p*n+j]
			}
			hs[i*n+j] += s
		}
	})
}

func (h *Host[F]) RMSNorm(out, rstd, x, w backend.View, rows, dim int, eps float64) {
	if h.skip() || !h.dims("RMSNorm", rows, dim) {
		return
	}
	os, ok1 := h.slice("RMSNorm", "out", out, mul(rows, dim))
	rs, ok2 := h.opt("RMSNorm", "rstd", rstd, rows)
	xs, ok3 := h.slice("RMSNorm", "x", x, mul(rows, dim))
	ws, ok4 := h.slice("RMSNorm", "w", w, dim)
	if ok1 && ok2 && ok3 && ok4 {
		RMSNormForwardT(os, rs, xs, ws, rows, dim, eps)
	}
}

func (h *Host[F]) RMSNormBackward(dx, dw, dout, x, w, rstd backend.View, rows, dim int) {
	const op = "RMSNormBackward"
	if h.skip() || !h.dims(op, rows, dim) {
		return
	}
	n := mul(rows, dim)
	dxs, ok1 := h.slice(op, "dx", dx, n)
	dws, ok2 := h.slice(op, "dw", dw, dim)
	dos, ok3 := h.slice(op, "dout", dout, n)
	xs, ok4 := h.slice(op, "x", x, n)
	ws, ok5 := h.slice(op, "w", w, dim)
	rs, ok6 := h.slice(op, "rstd", rstd, rows)
	if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 {
		RMSNormBackward(dxs, dws, dos, xs, ws, rs, rows, dim)
	}
}

func (h *Host[F]) AddBias(x, b backend.View, rows int) {
	if h.skip() || b.Nil() || !h.dims("AddBias", rows) {
		return
	}
	bs, ok1 := h.slice("AddBias", "b", b, b.N)
	xs, ok2 := h.slice("AddBias", "x", x, mul(rows, b.N))
	if ok1 && ok2 {
		AddBiasT(xs, bs, rows)
	}
}

func (h *Host[F]) AddBiasBackward(db, dout backend.View, rows int) {
	if h.skip() || db.Nil() || !h.dims("AddBiasBackward", rows) {
		return
	}
	dbs, ok1 := h.slice("AddBiasBackward", "db", db, db.N)
	ds, ok2 := h.slice("AddBiasBackward", "dout", dout, mul(rows, db.N))
	if ok1 && ok2 {
		AddBiasBackward(dbs, ds, rows)
	}
}

// Rope rotates each sequence's rows with RopeForwardT / RopeBackwardT (a
// *Rope) or the same arithmetic on another table, sequences in parallel.
func (h *Host[F]) Rope(x backend.View, r backend.RopeTable, seqs []backend.Seq, nHeads int, inverse bool) {
	const op = "Rope"
	if h.skip() {
		return
	}
	if r == nil {
		h.failf("%s: no table", op)
		return
	}
	d := r.HeadDimension()
	if d <= 0 || d%2 != 0 || nHeads < 0 {
		h.failf("%s: head dimension %d (must be even and positive), %d heads", op, d, nHeads)
		return
	}
	rows, maxPos, ok := h.seqExtent(op, seqs)
	if !ok {
		return
	}
	w := mul(nHeads, d)
	xs, ok := h.slice(op, "x", x, mul(rows, w))
	if !ok || !h.ropeCovers(op, r, maxPos) {
		return
	}
	sign := F(1)
	if inverse {
		sign = -1
	}
	if len(seqs) == 1 {
		ropeSeq(r, xs, seqs[0], nHeads, w, sign)
		return
	}
	ParallelFor(len(seqs), func(si int) { ropeSeq(r, xs, seqs[si], nHeads, w, sign) })
}

// ropeSeq rotates the rows of one sequence (row width w = nHeads·D).
func ropeSeq[F Float](r backend.RopeTable, xs []F, s backend.Seq, nHeads, w int, sign F) {
	xr := xs[s.Row*w : (s.Row+s.T)*w]
	if rp, ok := r.(*Rope); ok {
		ropeApplyT(rp, xr, s.T, nHeads, s.Pos, sign)
	} else {
		ropeApplyT(r, xr, s.T, nHeads, s.Pos, sign)
	}
}

// seqExtent checks seqs and returns the rows they span and the positions
// they need.
func (h *Host[F]) seqExtent(op string, seqs []backend.Seq) (rows, maxPos int, ok bool) {
	for i, s := range seqs {
		if !h.seqOK(op, i, s.Row, s.T, s.Pos) {
			return 0, 0, false
		}
		rows = max(rows, s.Row+s.T)
		maxPos = max(maxPos, s.Pos+s.T)
	}
	return rows, maxPos, true
}

// seqOK checks the first row, length and first position of sequence i.
func (h *Host[F]) seqOK(op string, i, row, t, pos int) bool {
	if row < 0 || t < 0 || pos < 0 || row > 1<<40 || t > 1<<40 || pos > 1<<40 {
		h.failf("%s: sequence %d has row %d, length %d, position %d", op, i, row, t, pos)
		return false
	}
	return true
}

// ropeCovers checks that r has tables for positions [0, n).
func (h *Host[F]) ropeCovers(op string, r backend.RopeTable, n int) bool {
	if n == 0 {
		return true
	}
	half := r.HeadDimension() / 2
	if rp, ok := r.(*Rope); ok {
		if rp.maxPos < n || len(rp.invFreq) != half {
			h.failf("%s: the rope table covers %d positions, need %d", op, rp.maxPos, n)
			return false
		}
		return true
	}
	c, s, err := tableAt(r, n-1)
	if err != nil || len(c) < half || len(s) < half {
		h.failf("%s: the rope table has no %d values at position %d (%v)", op, half, n-1, err)
		return false
	}
	return true
}

// tableAt calls r.Table, turning a panic of a foreign table into an error.
func tableAt(r backend.RopeTable, pos int) (c, s []float32, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	c, s = r.Table(pos)
	return c, s, nil
}

// heads checks an attention head layout.
func (h *Host[F]) heads(op string, hd backend.Heads) bool {
	if hd.NH <= 0 || hd.NKV <= 0 || hd.D <= 0 || hd.NH > 1<<20 || hd.NKV > 1<<20 || hd.D > 1<<20 {
		h.failf("%s: heads NH=%d NKV=%d D=%d must be positive", op, hd.NH, hd.NKV, hd.D)
		return false
	}
	if hd.KVMap == nil {
		if hd.NH%hd.NKV != 0 {
			h.failf("%s: %d query heads are not a multiple of %d K/V heads (and no KVMap)", op, hd.NH, hd.NKV)
			return false
		}
		return true
	}
	if len(hd.KVMap) != hd.NH {
		h.failf("%s: KVMap has %d entries for %d query heads", op, len(hd.KVMap), hd.NH)
		return false
	}
	for i, g := range hd.KVMap {
		if g < 0 || g >= hd.NKV {
			h.failf("%s: KVMap[%d] = %d outside [0, %d)", op, i, g, hd.NKV)
			return false
		}
	}
	return true
}

// Attention runs AttentionForwardT per sequence, sequences in parallel;
// a sequence whose keys come in several parts (a chain of shared-prefix
// segments) attends to their concatenation, gathered into pooled scratch.
func (h *Host[F]) Attention(out, q, k, v backend.View, seqs []backend.AttnSeq, hd backend.Heads) {
	const op = "Attention"
	if h.skip() || !h.heads(op, hd) || !h.needBE(op) {
		return
	}
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	rows, ownRows := 0, 0
	for i := range seqs {
		s := &seqs[i]
		if !h.seqOK(op, i, s.Row, s.T, s.Pos) {
			return
		}
		rows = max(rows, s.Row+s.T)
		if len(s.K) == 0 || len(s.V) == 0 {
			if len(s.K) != 0 || len(s.V) != 0 || s.Pos != 0 {
				h.failf("%s: sequence %d: without K and V parts the position must be 0 (got %d)", op, i, s.Pos)
				return
			}
			ownRows = max(ownRows, s.Row+s.T)
		} else if !h.parts(op, i, "K", s.K, mul(s.Pos+s.T, kvd)) || !h.parts(op, i, "V", s.V, mul(s.Pos+s.T, kvd)) {
			return
		}
		if !h.seqView(op, "Probs", i, s.Probs, mul(hd.NH, mul(s.T, s.Pos+s.T)), true) {
			return
		}
	}
	outs, ok1 := h.slice(op, "out", out, mul(rows, qd))
	qs, ok2 := h.slice(op, "q", q, mul(rows, qd))
	ks, ok3 := h.slice(op, "k", k, mul(ownRows, kvd))
	vs, ok4 := h.slice(op, "v", v, mul(ownRows, kvd))
	if !(ok1 && ok2 && ok3 && ok4) {
		return
	}
	if len(seqs) == 1 {
		h.attnSeq(&seqs[0], outs, qs, ks, vs, hd)
		return
	}
	ParallelFor(len(seqs), func(si int) { h.attnSeq(&seqs[si], outs, qs, ks, vs, hd) })
}

// attnSeq is the attention of one (checked) sequence.
func (h *Host[F]) attnSeq(s *backend.AttnSeq, outs, qs, ks, vs []F, hd backend.Heads) {
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	T, r0 := s.T, s.Row
	if T == 0 {
		return
	}
	var kk, vv []F
	var kp, vp *[]F
	if len(s.K) == 0 {
		kk, vv = ks[r0*kvd:(r0+T)*kvd], vs[r0*kvd:(r0+T)*kvd]
	} else {
		kk, kp = h.joined(s.K, (s.Pos+T)*kvd)
		vv, vp = h.joined(s.V, (s.Pos+T)*kvd)
	}
	probs := h.probs(s.Probs, hd.NH*T*(s.Pos+T))
	AttentionForwardT(h.be, outs[r0*qd:(r0+T)*qd], probs, qs[r0*qd:(r0+T)*qd], kk, vv, T, s.Pos, hd.NH, hd.NKV, hd.KVMap, hd.D)
	if kp != nil {
		h.gather.Put(kp)
	}
	if vp != nil {
		h.gather.Put(vp)
	}
}

// probs returns the n elements of a checked optional view (nil: absent).
func (h *Host[F]) probs(v backend.View, n int) []F {
	if v.Nil() {
		return nil
	}
	b := v.Buf.(*hostBuf[F])
	return b.data[v.Off : v.Off+n : v.Off+n]
}

// seqView checks view v (name, of sequence i) for n elements.
func (h *Host[F]) seqView(op, name string, i int, v backend.View, n int, optional bool) bool {
	if optional && v.Nil() {
		return true
	}
	if n < 0 {
		h.failf("%s: sequence %d: %s: negative or overflowing size", op, i, name)
		return false
	}
	if err := v.Check(op, name, n); err != nil {
		h.failf("%v (sequence %d)", err, i)
		return false
	}
	if _, ok := v.Buf.(*hostBuf[F]); !ok {
		h.failf("%s: %s of sequence %d is not a buffer of this device (%T)", op, name, i, v.Buf)
		return false
	}
	return true
}

// parts checks the K or V parts of sequence i: n elements in all.
func (h *Host[F]) parts(op string, i int, name string, ps []backend.View, n int) bool {
	total := 0
	for _, p := range ps {
		if !h.seqView(op, name, i, p, p.N, false) {
			return false
		}
		total += p.N
	}
	if n < 0 || total != n {
		h.failf("%s: the %s parts of sequence %d hold %d elements, want %d", op, name, i, total, n)
		return false
	}
	return true
}

// joined returns the checked parts ps as one slice of n elements: the
// part itself when there is one, else a pooled gather (returned as p, to
// be put back).
func (h *Host[F]) joined(ps []backend.View, n int) ([]F, *[]F) {
	if len(ps) == 1 {
		b := ps[0].Buf.(*hostBuf[F])
		return b.data[ps[0].Off : ps[0].Off+n], nil
	}
	p, _ := h.gather.Get().(*[]F)
	if p == nil {
		p = new([]F)
	}
	buf := (*p)[:0]
	for _, v := range ps {
		b := v.Buf.(*hostBuf[F])
		buf = append(buf, b.data[v.Off:v.Off+v.N]...)
	}
	*p = buf
	return buf, p
}

// AttentionBackward clears dq, dk and dv over the rows of seqs and runs
// AttentionBackward per sequence, sequences in parallel (the rope backward
// is the separate Rope op).
func (h *Host[F]) AttentionBackward(dq, dk, dv, dout, q, k, v backend.View, seqs []backend.AttnSeq, hd backend.Heads) {
	const op = "AttentionBackward"
	if h.skip() || !h.heads(op, hd) || !h.needBE(op) {
		return
	}
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	rows := 0
	for i := range seqs {
		s := &seqs[i]
		if !h.seqOK(op, i, s.Row, s.T, s.Pos) {
			return
		}
		if s.Pos != 0 || len(s.K) != 0 || len(s.V) != 0 {
			h.failf("%s: sequence %d must attend to its own rows from position 0", op, i)
			return
		}
		if !h.seqView(op, "Probs", i, s.Probs, mul(hd.NH, mul(s.T, s.T)), true) {
			return
		}
		rows = max(rows, s.Row+s.T)
	}
	nq, nkv := mul(rows, qd), mul(rows, kvd)
	dqs, ok1 := h.slice(op, "dq", dq, nq)
	dks, ok2 := h.slice(op, "dk", dk, nkv)
	dvs, ok3 := h.slice(op, "dv", dv, nkv)
	dos, ok4 := h.slice(op, "dout", dout, nq)
	qs, ok5 := h.slice(op, "q", q, nq)
	ks, ok6 := h.slice(op, "k", k, nkv)
	vs, ok7 := h.slice(op, "v", v, nkv)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return
	}
	clear(dqs)
	clear(dks)
	clear(dvs)
	if len(seqs) == 1 {
		h.attnBackSeq(&seqs[0], dqs, dks, dvs, dos, qs, ks, vs, hd)
		return
	}
	ParallelFor(len(seqs), func(si int) { h.attnBackSeq(&seqs[si], dqs, dks, dvs, dos, qs, ks, vs, hd) })
}

// attnBackSeq is the attention backward of one (checked) sequence.
func (h *Host[F]) attnBackSeq(s *backend.AttnSeq, dqs, dks, dvs, dos, qs, ks, vs []F, hd backend.Heads) {
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	r0, T := s.Row, s.T
	if T == 0 {
		return
	}
	probs := h.probs(s.Probs, hd.NH*T*T)
	AttentionBackward(h.be, dqs[r0*qd:(r0+T)*qd], dks[r0*kvd:(r0+T)*kvd], dvs[r0*kvd:(r0+T)*kvd], dos[r0*qd:(r0+T)*qd],
		qs[r0*qd:(r0+T)*qd], ks[r0*kvd:(r0+T)*kvd], vs[r0*kvd:(r0+T)*kvd], probs, T, hd.NH, hd.NKV, hd.KVMap, hd.D)
}

func (h *Host[F]) SiLUMul(out, gate, up backend.View) {
	if h.skip() {
		return
	}
	n := gate.N
	os, ok1 := h.slice("SiLUMul", "out", out, n)
	gs, ok2 := h.slice("SiLUMul", "gate", gate, n)
	us, ok3 := h.slice("SiLUMul", "up", up, n)
	if ok1 && ok2 && ok3 {
		SwiGLUForwardBE(h.be, os, gs, us)
	}
}

func (h *Host[F]) SwiGLUBackward(dgate, dup, dout, gate, up backend.View) {
	const op = "SwiGLUBackward"
	if h.skip() {
		return
	}
	n := gate.N
	dgs, ok1 := h.slice(op, "dgate", dgate, n)
	dus, ok2 := h.slice(op, "dup", dup, n)
	dos, ok3 := h.slice(op, "dout", dout, n)
	gs, ok4 := h.slice(op, "gate", gate, n)
	us, ok5 := h.slice(op, "up", up, n)
	if ok1 && ok2 && ok3 && ok4 && ok5 {
		SwiGLUBackwardBE(h.be, dgs, dus, dos, gs, us)
	}
}

// embedIDs checks ids against a table of tableN elements of rows of dim.
func (h *Host[F]) embedIDs(op string, ids []int, tableN, dim int) bool {
	if dim <= 0 {
		h.failf("%s: dimension %d", op, dim)
		return false
	}
	vocab := tableN / dim
	for i, id := range ids {
		if id < 0 || id >= vocab {
			h.failf("%s: id %d (row %d) outside the table's %d rows", op, id, i, vocab)
			return false
		}
	}
	return true
}

func (h *Host[F]) Embed(out, table backend.View, ids []int, dim int) {
	if h.skip() || !h.embedIDs("Embed", ids, table.N, dim) {
		return
	}
	os, ok1 := h.slice("Embed", "out", out, mul(len(ids), dim))
	ts, ok2 := h.slice("Embed", "table", table, table.N)
	if ok1 && ok2 {
		EmbeddingForwardT(os, ts, ids, dim)
	}
}

func (h *Host[F]) EmbedBackward(dtable, dx backend.View, ids []int, dim int) {
	if h.skip() || !h.embedIDs("EmbedBackward", ids, dtable.N, dim) {
		return
	}
	ts, ok1 := h.slice("EmbedBackward", "dtable", dtable, dtable.N)
	xs, ok2 := h.slice("EmbedBackward", "dx", dx, mul(len(ids), dim))
	if ok1 && ok2 {
		EmbeddingBackward(ts, xs, ids, dim)
	}
}

// lossArgs takes the pending error, then checks targets and the logits
// operands; it returns the logits and dlogits (nil when absent).
func (h *Host[F]) lossArgs(op string, dlogits, logits backend.View, targets []int, vocab int) (dl, z []F, err error) {
	if err := h.take(); err != nil {
		return nil, nil, err
	}
	if vocab <= 0 {
		return nil, nil, fmt.Errorf("%s: vocabulary size %d", op, vocab)
	}
	for i, t := range targets {
		if t < -1 || t >= vocab {
			return nil, nil, fmt.Errorf("%s: target %d of row %d outside [-1, %d)", op, t, i, vocab)
		}
	}
	n := mul(len(targets), vocab)
	z, ok1 := h.slice(op, "logits", logits, n)
	dl, ok2 := h.opt(op, "dlogits", dlogits, n)
	if !ok1 || !ok2 {
		return nil, nil, h.take()
	}
	return dl, z, nil
}

// CrossEntropy: with dlogits in float32, CrossEntropyFast (training's
// path, which overwrites dlogits); otherwise CrossEntropyTargets, the exact
// float64 loss (loss-only calls, as evolve's fitness; float64 dlogits are
// cleared first, as the interface overwrites).
func (h *Host[F]) CrossEntropy(dlogits, logits backend.View, targets []int, vocab int, weight float64) (float64, error) {
	dl, z, err := h.lossArgs("CrossEntropy", dlogits, logits, targets, vocab)
	if err != nil {
		return 0, err
	}
	if dl != nil && h.f32 {
		return CrossEntropyFast(h.be, h.workers, any(dl).([]float32), any(z).([]float32), targets, vocab, weight), nil
	}
	clear(dl)
	return CrossEntropyTargets(dl, z, targets, vocab, weight), nil
}

func (h *Host[F]) KL(dlogits, logits, teacher backend.View, targets []int, vocab int, weight float64) (float64, error) {
	dl, z, err := h.lossArgs("KL", dlogits, logits, targets, vocab)
	if err != nil {
		return 0, err
	}
	zt, ok := h.slice("KL", "teacher", teacher, mul(len(targets), vocab))
	if !ok {
		return 0, h.take()
	}
	return KLTargets(dl, z, zt, targets, vocab, weight), nil
}

func (h *Host[F]) SparseKL(dlogits, logits backend.View, idx []int32, val []float32, k int, targets []int, vocab int, weight float64) (float64, error) {
	dl, z, err := h.lossArgs("SparseKL", dlogits, logits, targets, vocab)
	if err != nil {
		return 0, err
	}
	n := mul(len(targets), k)
	if k <= 0 || len(idx) < n || len(val) < n {
		return 0, fmt.Errorf("SparseKL: %d indices and %d values for %d rows × k = %d", len(idx), len(val), len(targets), k)
	}
	for i, x := range idx[:n] {
		if x < 0 || int(x) >= vocab {
			return 0, fmt.Errorf("SparseKL: index %d (row %d) outside the vocabulary of %d", x, i/k, vocab)
		}
	}
	return SparseKLTargets(dl, z, idx, val, k, targets, vocab, weight), nil
}

// AdamW is the fused kernel (AdamW) in float32, plain loops in float64.
func (h *Host[F]) AdamW(w, g, m, v backend.View, s backend.AdamWStep) {
	if h.skip() {
		return
	}
	n := w.N
	ws, ok1 := h.slice("AdamW", "w", w, n)
	gs, ok2 := h.slice("AdamW", "g", g, n)
	ms, ok3 := h.slice("AdamW", "m", m, n)
	vs, ok4 := h.slice("AdamW", "v", v, n)
	if ok1 && ok2 && ok3 && ok4 && !AdamWT(ws, gs, ms, vs, &s) {
		h.fail(backend.ErrNonFinite)
	}
}

// SumSquares is SumSquares over the views in order, continuing one float64
// accumulator (train.GradNorm's order); it returns the pending error first.
func (h *Host[F]) SumSquares(vs []backend.View) (float64, error) {
	if err := h.take(); err != nil {
		return 0, err
	}
	var s float64
	for i, v := range vs {
		x, ok := h.slice("SumSquares", "view", v, v.N)
		if !ok {
			return 0, fmt.Errorf("%w (view %d of %d)", h.take(), i, len(vs))
		}
		s = SumSquares(s, x)
	}
	return s, nil
}

// Scale is the clipping kernel (Scale).
func (h *Host[F]) Scale(v backend.View, c float32) {
	if h.skip() {
		return
	}
	if x, ok := h.slice("Scale", "v", v, v.N); ok {
		Scale(x, F(c))
	}
}

// SGD is the SGD kernel (SGD), in float64 rounded once.
func (h *Host[F]) SGD(w, g backend.View, lr, wd float64) {
	if h.skip() {
		return
	}
	if g.N != w.N {
		h.failf("SGD: g has %d elements, w %d", g.N, w.N)
		return
	}
	ws, ok1 := h.slice("SGD", "w", w, w.N)
	gs, ok2 := h.slice("SGD", "g", g, w.N)
	if ok1 && ok2 {
		SGD(ws, gs, lr, wd)
	}
}

var _ backend.Device[float32] = (*Host[float32])(nil)
var _ backend.Device[float64] = (*Host[float64])(nil)
