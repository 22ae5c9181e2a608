//go:build vulkan && cgo

package vulkan

import (
	"errors"
	"fmt"
	"sync"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

func init() {
	backend.RegisterDevice("vulkan", func(dev int) (backend.Backend, error) {
		return New(Options{Device: dev})
	}, true)
}

// Backend implements backend.Backend on host slices: each call uploads its
// operands into scratch buffers, runs one GEMM and downloads C. It is
// correct but bus-bound; the device-resident interface (Float32Device) is
// the fast path. backend.Backend has no error results: a device failure is
// recorded (Err) and that product is computed on the CPU instead, so the
// result is still right.
type Backend struct {
	d   *Device
	mu  sync.Mutex
	sc  [3]*Buffer // scratch A, B, C
	err error
	cpu backend.Backend
}

// New opens a device and wraps it as a backend.Backend.
func New(o Options) (*Backend, error) {
	d, err := Open(o)
	if err != nil {
		return nil, err
	}
	return &Backend{d: d}, nil
}

// Device is the underlying device (buffer-level API).
func (b *Backend) Device() *Device { return b.d }

// Name is "vulkan".
func (b *Backend) Name() string { return "vulkan" }

// Err returns the first device error met by a host-slice product (which
// was then computed on the CPU), and clears it.
func (b *Backend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.err
	b.err = nil
	return err
}

// Close frees the scratch buffers and the device.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, s := range b.sc {
		s.Free()
		b.sc[i] = nil
	}
	b.d.Close()
}

func (b *Backend) scratch(i, n int) (*Buffer, error) {
	if s := b.sc[i]; s != nil && s.n >= n {
		return s, nil
	}
	b.sc[i].Free()
	b.sc[i] = nil
	s, err := b.d.Alloc(F32, max(n, 1024))
	if err != nil {
		return nil, err
	}
	b.sc[i] = s
	return s, nil
}

// fallback records err and runs the product on the CPU.
func (b *Backend) fallback(err error, f func(be backend.Backend)) {
	if b.err == nil {
		b.err = fmt.Errorf("vulkan backend (computed on the CPU instead): %w", err)
	}
	if b.cpu == nil {
		b.cpu = cpu.New()
	}
	f(b.cpu)
}

func (b *Backend) gemm(tA, tB bool, c, a, bb []float32, m, n, k int, acc bool) {
	if m == 0 || n == 0 {
		return
	}
	backend.CheckDims("vulkan gemm", c, a, bb, m*n, m*k, k*n)
	if k == 0 {
		if !acc {
			clear(c[:m*n])
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := func() error {
		sa, err := b.scratch(0, m*k)
		if err != nil {
			return err
		}
		sb, err := b.scratch(1, k*n)
		if err != nil {
			return err
		}
		scc, err := b.scratch(2, m*n)
		if err != nil {
			return err
		}
		if err := errors.Join(sa.Upload(0, a[:m*k]), sb.Upload(0, bb[:k*n])); err != nil {
			return err
		}
		if acc {
			if err := scc.Upload(0, c[:m*n]); err != nil {
				return err
			}
		}
		if err := b.d.Gemm(tA, tB, scc.Slice(0, m*n), sa.Slice(0, m*k), sb.Slice(0, k*n), m, n, k, acc); err != nil {
			return err
		}
		return scc.Download(0, c[:m*n])
	}()
	if err != nil {
		b.fallback(err, func(be backend.Backend) {
			switch {
			case tA:
				be.MatMulTN(c, a, bb, m, n, k, acc)
			case tB:
				be.MatMulNT(c, a, bb, m, n, k, acc)
			default:
				be.MatMulNN(c, a, bb, m, n, k, acc)
			}
		})
	}
}

// MatMulNT computes C[m×n] (+)= A[m×k]·B[n×k]ᵀ.
func (b *Backend) MatMulNT(c, a, bb []float32, m, n, k int, acc bool) {
	b.gemm(false, true, c, a, bb, m, n, k, acc)
}

// MatMulNN computes C[m×n] (+)= A[m×k]·B[k×n].
func (b *Backend) MatMulNN(c, a, bb []float32, m, n, k int, acc bool) {
	b.gemm(false, false, c, a, bb, m, n, k, acc)
}

// MatMulTN computes C[m×n] (+)= A[k×m]ᵀ·B[k×n].
func (b *Backend) MatMulTN(c, a, bb []float32, m, n, k int, acc bool) {
	b.gemm(true, false, c, a, bb, m, n, k, acc)
}

// SyrkTN computes H[n×n] += X[k×n]ᵀ·X[k×n] (the TN GEMM with X bound twice;
// the full matrix is computed, so H is exactly symmetric as each element
// and its mirror sum the same products in the same order).
func (b *Backend) SyrkTN(h, x []float32, n, k int) {
	if n == 0 || k == 0 {
		return
	}
	backend.CheckDims("vulkan syrk", h, x, x, n*n, k*n, k*n)
	b.mu.Lock()
	defer b.mu.Unlock()
	err := func() error {
		sx, err := b.scratch(0, k*n)
		if err != nil {
			return err
		}
		sh, err := b.scratch(2, n*n)
		if err != nil {
			return err
		}
		if err := errors.Join(sx.Upload(0, x[:k*n]), sh.Upload(0, h[:n*n])); err != nil {
			return err
		}
		if err := b.d.Gemm(true, false, sh.Slice(0, n*n), sx.Slice(0, k*n), sx.Slice(0, k*n), n, n, k, true); err != nil {
			return err
		}
		return sh.Download(0, h[:n*n])
	}()
	if err != nil {
		b.fallback(err, func(be backend.Backend) { be.SyrkTN(h, x, n, k) })
	}
}

var _ backend.Backend = (*Backend)(nil)

// Float32Device is the device-resident interface on this backend's device
// (nn.DeviceFor picks it): a new handle per call (own sticky error and
// non-finite flag), sharing the device.
func (b *Backend) Float32Device() backend.Device[float32] { return b.d.F32() }
