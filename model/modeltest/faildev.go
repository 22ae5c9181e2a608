package modeltest

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// ErrInjected is the failure a Fault injects (a GPU running out of memory
// in the middle of a computation).
var ErrInjected = errors.New("injected device failure: out of device memory")

// Fault counts the calls of the devices that share it (Alloc, Upload,
// Download, Resident and every operation, losses included; not Free, Host,
// Sync or Name) and fails call number At (1-based; 0: none): an Alloc,
// Upload, Download or Resident returns ErrInjected, an operation records it
// as the device's sticky error (later operations are skipped, and the next
// Sync, Download or loss returns it), a loss returns it. The devices work
// normally afterwards, as after a transient out-of-memory. Safe for
// concurrent devices (a search's workers).
type Fault struct {
	At int

	mu    sync.Mutex
	n     int
	fired bool
}

// Calls is the number of calls counted so far.
func (f *Fault) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// Fired reports whether the failure was injected.
func (f *Fault) Fired() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired
}

// hit counts one call and reports whether it is the one to fail.
func (f *Fault) hit() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n == f.At {
		f.fired = true
		return true
	}
	return false
}

// FailDevice is a float32 device that fails on demand (see Fault); every
// operation is otherwise the wrapped device's.
type FailDevice struct {
	backend.Device[float32]
	F *Fault

	mu      sync.Mutex
	pending error // the injected operation failure, until reported
}

// NewFailDevice wraps dev; f is shared by every device of one test.
func NewFailDevice(dev backend.Device[float32], f *Fault) *FailDevice {
	return &FailDevice{Device: dev, F: f}
}

// injected returns the error of a failing call.
func (d *FailDevice) injected(op string) error { return fmt.Errorf("%s: %w", op, ErrInjected) }

// op reports whether an operation should run: not while an injected
// failure is pending, and not when this call is the one to fail (which
// makes it pending).
func (d *FailDevice) op(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending != nil {
		return false
	}
	if d.F.hit() {
		d.pending = d.injected(name)
		return false
	}
	return true
}

// take returns and clears the pending injected failure (after draining the
// wrapped device's own error, which came first).
func (d *FailDevice) take() error {
	d.mu.Lock()
	err := d.pending
	d.pending = nil
	d.mu.Unlock()
	if err != nil {
		if e := d.Device.Sync(); e != nil {
			return e
		}
	}
	return err
}

func (d *FailDevice) Name() string { return "failing " + d.Device.Name() }

func (d *FailDevice) Alloc(n int) (backend.View, error) {
	if d.F.hit() {
		return backend.View{}, d.injected("Alloc")
	}
	return d.Device.Alloc(n)
}

func (d *FailDevice) Upload(dst backend.View, src []float32) error {
	if d.F.hit() {
		return d.injected("Upload")
	}
	return d.Device.Upload(dst, src)
}

func (d *FailDevice) Download(dst []float32, src backend.View) error {
	if err := d.take(); err != nil {
		return err
	}
	if d.F.hit() {
		return d.injected("Download")
	}
	return d.Device.Download(dst, src)
}

func (d *FailDevice) Resident(host []float32) (backend.View, error) {
	if d.F.hit() {
		return backend.View{}, d.injected("Resident")
	}
	return d.Device.Resident(host)
}

func (d *FailDevice) Sync() error {
	if err := d.take(); err != nil {
		return err
	}
	return d.Device.Sync()
}

func (d *FailDevice) Zero(v backend.View) {
	if d.op("Zero") {
		d.Device.Zero(v)
	}
}

func (d *FailDevice) Copy(dst, src backend.View) {
	if d.op("Copy") {
		d.Device.Copy(dst, src)
	}
}

func (d *FailDevice) Add(dst, src backend.View) {
	if d.op("Add") {
		d.Device.Add(dst, src)
	}
}

func (d *FailDevice) MatNT(c, a, b backend.View, m, n, k int, acc bool) {
	if d.op("MatNT") {
		d.Device.MatNT(c, a, b, m, n, k, acc)
	}
}

func (d *FailDevice) MatNN(c, a, b backend.View, m, n, k int, acc bool) {
	if d.op("MatNN") {
		d.Device.MatNN(c, a, b, m, n, k, acc)
	}
}

func (d *FailDevice) MatTN(c, a, b backend.View, m, n, k int, acc bool) {
	if d.op("MatTN") {
		d.Device.MatTN(c, a, b, m, n, k, acc)
	}
}

func (d *FailDevice) Syrk(h, x backend.View, n, k int) {
	if d.op("Syrk") {
		d.Device.Syrk(h, x, n, k)
	}
}

func (d *FailDevice) RMSNorm(out, rstd, x, w backend.View, rows, dim int, eps float64) {
	if d.op("RMSNorm") {
		d.Device.RMSNorm(out, rstd, x, w, rows, dim, eps)
	}
}

func (d *FailDevice) RMSNormBackward(dx, dw, dout, x, w, rstd backend.View, rows, dim int) {
	if d.op("RMSNormBackward") {
		d.Device.RMSNormBackward(dx, dw, dout, x, w, rstd, rows, dim)
	}
}

func (d *FailDevice) AddBias(x, b backend.View, rows int) {
	if d.op("AddBias") {
		d.Device.AddBias(x, b, rows)
	}
}

func (d *FailDevice) AddBiasBackward(db, dout backend.View, rows int) {
	if d.op("AddBiasBackward") {
		d.Device.AddBiasBackward(db, dout, rows)
	}
}

func (d *FailDevice) Rope(x backend.View, r backend.RopeTable, seqs []backend.Seq, nHeads int, inverse bool) {
	if d.op("Rope") {
		d.Device.Rope(x, r, seqs, nHeads, inverse)
	}
}

func (d *FailDevice) Attention(out, q, k, v backend.View, seqs []backend.AttnSeq, h backend.Heads) {
	if d.op("Attention") {
		d.Device.Attention(out, q, k, v, seqs, h)
	}
}

func (d *FailDevice) AttentionBackward(dq, dk, dv, dout, q, k, v backend.View, seqs []backend.AttnSeq, h backend.Heads) {
	if d.op("AttentionBackward") {
		d.Device.AttentionBackward(dq, dk, dv, dout, q, k, v, seqs, h)
	}
}

func (d *FailDevice) SiLUMul(out, gate, up backend.View) {
	if d.op("SiLUMul") {
		d.Device.SiLUMul(out, gate, up)
	}
}

func (d *FailDevice) SwiGLUBackward(dgate, dup, dout, gate, up backend.View) {
	if d.op("SwiGLUBackward") {
		d.Device.SwiGLUBackward(dgate, dup, dout, gate, up)
	}
}

func (d *FailDevice) Embed(out, table backend.View, ids []int, dim int) {
	if d.op("Embed") {
		d.Device.Embed(out, table, ids, dim)
	}
}

func (d *FailDevice) EmbedBackward(dtable, dx backend.View, ids []int, dim int) {
	if d.op("EmbedBackward") {
		d.Device.EmbedBackward(dtable, dx, ids, dim)
	}
}

// loss runs a loss unless a failure is pending or this call fails.
func (d *FailDevice) loss(name string, f func() (float64, error)) (float64, error) {
	if err := d.take(); err != nil {
		return 0, err
	}
	if d.F.hit() {
		if err := d.Device.Sync(); err != nil {
			return 0, err // the wrapped device's error came first
		}
		return 0, d.injected(name)
	}
	return f()
}

func (d *FailDevice) CrossEntropy(dlogits, logits backend.View, targets []int, vocab int, weight float64) (float64, error) {
	return d.loss("CrossEntropy", func() (float64, error) {
		return d.Device.CrossEntropy(dlogits, logits, targets, vocab, weight)
	})
}

func (d *FailDevice) KL(dlogits, logits, teacher backend.View, targets []int, vocab int, weight float64) (float64, error) {
	return d.loss("KL", func() (float64, error) {
		return d.Device.KL(dlogits, logits, teacher, targets, vocab, weight)
	})
}

func (d *FailDevice) SparseKL(dlogits, logits backend.View, idx []int32, val []float32, k int, targets []int, vocab int, weight float64) (float64, error) {
	return d.loss("SparseKL", func() (float64, error) {
		return d.Device.SparseKL(dlogits, logits, idx, val, k, targets, vocab, weight)
	})
}

func (d *FailDevice) AdamW(w, g, m, v backend.View, s backend.AdamWStep) {
	if d.op("AdamW") {
		d.Device.AdamW(w, g, m, v, s)
	}
}

// SumSquares is synchronous like a loss.
func (d *FailDevice) SumSquares(vs []backend.View) (float64, error) {
	return d.loss("SumSquares", func() (float64, error) { return d.Device.SumSquares(vs) })
}

func (d *FailDevice) Scale(v backend.View, s float32) {
	if d.op("Scale") {
		d.Device.Scale(v, s)
	}
}

func (d *FailDevice) SGD(w, g backend.View, lr, wd float64) {
	if d.op("SGD") {
		d.Device.SGD(w, g, lr, wd)
	}
}

// FailBackend is a backend whose device (nn.DeviceFor) fails on demand: a
// new FailDevice sharing F on every call, over the host device (Copy
// false: host views, the CPU's code paths) or a CopyDevice (Copy true: the
// GPU's code paths), so that the Backend-taking API of every package can be
// driven into a device failure.
type FailBackend struct {
	backend.Backend
	F    *Fault
	Copy bool
}

// Float32Device returns a new FailDevice sharing b.F.
func (b FailBackend) Float32Device() backend.Device[float32] {
	if b.Copy {
		return NewFailDevice(NewCopyDevice(b.Backend), b.F)
	}
	return NewFailDevice(nn.NewHost[float32](b.Backend), b.F)
}

// Sweep checks that a computation surfaces a device failure at any point:
// it runs run once without a failure (which must succeed) to count the
// device calls, then with call n failing for n = 1 … calls (at most
// maxRuns values of n, evenly spread, always the first and the last), and
// requires every failing run to return an error wrapping ErrInjected,
// never to panic and never to succeed. check, if not nil, is called after
// every failing run (e.g. to look for half-written files).
func Sweep(t testing.TB, maxRuns int, run func(be FailBackend) error, copyDev bool, be backend.Backend, check func(n int)) {
	t.Helper()
	f := &Fault{}
	if err := run(FailBackend{Backend: be, F: f, Copy: copyDev}); err != nil {
		t.Fatalf("without a failure: %v", err)
	}
	calls := f.Calls()
	if calls == 0 {
		t.Fatal("the computation made no device call")
	}
	step := max(1, (calls+maxRuns-1)/max(maxRuns, 1))
	for n := 1; n <= calls; n += step {
		sweepOne(t, run, FailBackend{Backend: be, F: &Fault{At: n}, Copy: copyDev}, n, calls, check)
		if n+step > calls && n != calls {
			n = calls - step // the last call too
		}
	}
}

func sweepOne(t testing.TB, run func(be FailBackend) error, fb FailBackend, n, calls int, check func(n int)) {
	t.Helper()
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("failing call %d of %d: panic: %v\n%s", n, calls, p, debug.Stack())
				err = ErrInjected
			}
		}()
		err = run(fb)
	}()
	switch {
	case !fb.F.Fired():
		t.Errorf("failing call %d of %d: the call was not made (the computation is not deterministic?)", n, calls)
	case err == nil:
		t.Errorf("failing call %d of %d: no error (the failure was lost)", n, calls)
	case !errors.Is(err, ErrInjected) && !strings.Contains(err.Error(), ErrInjected.Error()):
		t.Errorf("failing call %d of %d: error %q does not carry the injected failure", n, calls, err)
	}
	if check != nil {
		check(n)
	}
}
