// Package cpu is the CPU backend: BLIS-style packed and blocked fp32 GEMM
// with AVX-512 (12×32 tile) and AVX2+FMA (6×16) micro-kernels in Go
// assembly, a pure-Go twin, run-time dispatch through cpuid, and a persistent
// worker pool.
//
// Results are deterministic: work is split only over output tiles (rows or
// columns of C), never over the K reduction, and each element is reduced in
// the same fixed K-block order (kc = 256) whatever the worker count or the
// path (A packed or read in place). The avx512 and avx2 variants give
// bitwise identical results (same FMA chain per element; the AVX2 row
// kernels mimic the AVX-512 lane layout), so results reproduce across
// machines; purego does not fuse multiply-adds and agrees only within a
// tolerance.
//
// Batch invariance: on the GEMM path an element's bits do not depend on m or
// n either. Small products take other paths (NT and bf16 with m ≤ 4 use dot
// products, NN/TN with m = 1 use axpy), so a row computed alone can differ
// in the last bits from the same row inside a larger batch.
//
// API beyond backend.Backend:
//
//	New, NewVariant("avx512"|"avx2"|"purego"), Available, (*CPU).WithWorkers
//	(*CPU).MatMulNTBF16    C (+)= A·Bᵀ with bf16 B (weights)
//	Dot, Axpy, RMSNorm, Softmax, SiLUMul, Expf, BF16ToFloat32   row kernels
//	(*CPU).SoftmaxCausalRow, (*CPU).SiLUMul   backend.RowKernels (bitwise the
//	                       pure-Go twins in every variant)
//	Info                   CPU, features, caches, variant, workers
//
// Registered backends: "cpu" (best variant, the default) and "purego".
package cpu

//go:generate go run gen_asm.go

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/darwinlm/darwinlm-go/backend"
)

func init() {
	backend.Register("cpu", func() (backend.Backend, error) { return New(), nil }, true)
	backend.Register("purego", func() (backend.Backend, error) { return NewVariant("purego") }, false)
}

// preference lists variants from fastest to slowest.
var preference = []string{"avx512", "avx2", "purego"}

var (
	kernMu  sync.Mutex
	kernels = map[string]*kernel{}
)

func registerKernel(k *kernel) {
	kernMu.Lock()
	kernels[k.name] = k
	kernMu.Unlock()
}

// Available lists the variants this machine and build can run, best first.
func Available() []string {
	kernMu.Lock()
	defer kernMu.Unlock()
	var out []string
	for _, n := range preference {
		if kernels[n] != nil {
			out = append(out, n)
		}
	}
	return out
}

func best() *kernel {
	kernMu.Lock()
	defer kernMu.Unlock()
	for _, n := range preference {
		if k := kernels[n]; k != nil {
			return k
		}
	}
	panic("cpu: no kernel registered")
}

// CPU implements backend.Backend.
type CPU struct {
	kern     *kernel
	workers  int
	noDirect bool // tests: always pack A
}

// New returns the best available variant using GOMAXPROCS workers.
func New() *CPU { return &CPU{kern: best(), workers: runtime.GOMAXPROCS(0)} }

// NewVariant returns a forced variant ("avx512", "avx2", "purego"; a "cpu-"
// prefix is accepted). It fails if the CPU or the build lacks it.
func NewVariant(name string) (*CPU, error) {
	if len(name) > 4 && name[:4] == "cpu-" {
		name = name[4:]
	}
	kernMu.Lock()
	k := kernels[name]
	kernMu.Unlock()
	if k == nil {
		return nil, fmt.Errorf("cpu: variant %q not available (have %v)", name, Available())
	}
	return &CPU{kern: k, workers: runtime.GOMAXPROCS(0)}, nil
}

// WithWorkers returns a copy that splits work over n goroutines (n ≥ 1).
// The results do not depend on n.
func (c *CPU) WithWorkers(n int) *CPU {
	return &CPU{kern: c.kern, workers: max(n, 1), noDirect: c.noDirect}
}

// Workers is the number of goroutines a call may use.
func (c *CPU) Workers() int { return c.workers }

// Variant is the kernel variant: "avx512", "avx2" or "purego".
func (c *CPU) Variant() string { return c.kern.name }

func (c *CPU) Name() string {
	if c.kern.name == "purego" {
		return "purego"
	}
	return "cpu-" + c.kern.name
}

// Below this many multiply-adds a call runs on one goroutine: waking a
// worker costs a few microseconds.
const parallelMACs = 1 << 18

func (c *CPU) parts(macs int) int {
	if macs < parallelMACs {
		return 1
	}
	return c.workers
}

// gemm splits C over workers along N (each worker then packs only its own
// columns of B) unless N is too narrow, in which case along M.
func (c *CPU) gemm(g *gemmJob, m, n int) {
	for nk := g.kern.narrow; nk != nil && n <= nk.nr; nk = nk.narrow {
		g.kern = nk // fewer wasted columns in the edge tiles
	}
	kn := g.kern
	w := c.parts(m * n * g.k)
	if g.upper {
		// Work up to column j grows like j²: balance the triangle.
		units := (n + kn.nr - 1) / kn.nr
		w = min(w, units)
		cut := func(t int) int {
			if t >= w {
				return n
			}
			u := int(math.Round(float64(units) * math.Sqrt(float64(t)/float64(w))))
			return min(u*kn.nr, n)
		}
		parallel(w, func(t int) {
			j0, j1 := cut(t), cut(t+1)
			if j0 < j1 {
				g.run(0, min(m, j1), j0, j1)
			}
		})
		return
	}
	nu := (n + kn.nr - 1) / kn.nr
	mu := (m + kn.mr - 1) / kn.mr
	nw := n // columns per worker
	splitN := nu >= 2*w || nu >= mu
	if splitN {
		w = min(w, nu)
		nw = (nu + w - 1) / w * kn.nr
	}
	if g.aview != nil && readsDirect(*g.aview, kn.mr, kn.nr, nw, kn.nc) && !c.noDirect {
		g.direct = g.aview
	}
	if splitN {
		parallel(w, func(t int) {
			j0, j1 := min(t*nu/w*kn.nr, n), min((t+1)*nu/w*kn.nr, n)
			if j0 < j1 {
				g.run(0, m, j0, j1)
			}
		})
		return
	}
	w = min(w, mu)
	parallel(w, func(t int) {
		i0, i1 := min(t*mu/w*kn.mr, m), min((t+1)*mu/w*kn.mr, m)
		if i0 < i1 {
			g.run(i0, i1, 0, n)
		}
	})
}

// trivial handles empty shapes; it reports whether there is nothing left.
func trivial(c []float32, m, n, k int, acc bool) bool {
	if m == 0 || n == 0 {
		return true
	}
	if k == 0 {
		if !acc {
			clear(c[:m*n])
		}
		return true
	}
	return false
}

func (c *CPU) MatMulNT(cc, a, b []float32, m, n, k int, acc bool) {
	backend.CheckDims("MatMulNT", cc, a, b, m*n, m*k, n*k)
	if trivial(cc, m, n, k, acc) {
		return
	}
	if m <= smallM {
		dot := c.kern.dot
		c.gemvDots(cc, m, n, k, acc, func(i, j int) float32 { return dot(a[i*k:i*k+k], b[j*k:j*k+k]) })
		return
	}
	A := view{a, k, 1, c.kern.tr4}
	Bt := view{b, k, 1, c.kern.tr4}
	c.gemm(&gemmJob{kern: c.kern, c: cc, ldc: n, k: k, packA: A.pack, packB: Bt.pack, acc: acc, aview: &A}, m, n)
}

// MatMulNTCausal is MatMulNT for causal attention scores: row i of C is
// query i mod T of a stack of heads, which sees columns 0..past + i mod T.
// Those entries get bitwise MatMulNT's values; tiles lying wholly beyond
// them are not computed, so the rest of C is left unspecified (the causal
// softmax never reads it). T ≥ 1, past ≥ 0.
func (c *CPU) MatMulNTCausal(cc, a, b []float32, m, n, k, T, past int) {
	backend.CheckDims("MatMulNTCausal", cc, a, b, m*n, m*k, n*k)
	if m <= smallM || n == 0 || k == 0 {
		c.MatMulNT(cc, a, b, m, n, k, false)
		return
	}
	if T < 1 || past < 0 {
		panic(fmt.Sprintf("MatMulNTCausal: T=%d past=%d", T, past))
	}
	A := view{a, k, 1, c.kern.tr4}
	Bt := view{b, k, 1, c.kern.tr4}
	c.gemm(&gemmJob{kern: c.kern, c: cc, ldc: n, k: k, packA: A.pack, packB: Bt.pack, aview: &A, causalT: T, causalPast: past}, m, n)
}

func (c *CPU) MatMulNN(cc, a, b []float32, m, n, k int, acc bool) {
	backend.CheckDims("MatMulNN", cc, a, b, m*n, m*k, k*n)
	if trivial(cc, m, n, k, acc) {
		return
	}
	if m == 1 {
		c.gemvAxpy(cc[:n], a, 1, b, n, k, acc)
		return
	}
	A := view{a, k, 1, c.kern.tr4}
	Bt := view{b, 1, n, c.kern.tr4}
	c.gemm(&gemmJob{kern: c.kern, c: cc, ldc: n, k: k, packA: A.pack, packB: Bt.pack, acc: acc, aview: &A}, m, n)
}

func (c *CPU) MatMulTN(cc, a, b []float32, m, n, k int, acc bool) {
	backend.CheckDims("MatMulTN", cc, a, b, m*n, k*m, k*n)
	if trivial(cc, m, n, k, acc) {
		return
	}
	if m == 1 {
		c.gemvAxpy(cc[:n], a, 1, b, n, k, acc)
		return
	}
	A := view{a, 1, m, c.kern.tr4}
	Bt := view{b, 1, n, c.kern.tr4}
	c.gemm(&gemmJob{kern: c.kern, c: cc, ldc: n, k: k, packA: A.pack, packB: Bt.pack, acc: acc, aview: &A}, m, n)
}

// SyrkTN computes H += XᵀX. Only tiles touching the upper triangle are
// computed, then the strict lower triangle is copied from the upper one, so
// H must be symmetric on entry (it is when it only ever accumulates XᵀX).
func (c *CPU) SyrkTN(h, x []float32, n, k int) {
	backend.CheckDims("SyrkTN", h, x, x, n*n, k*n, k*n)
	if n == 0 || k == 0 {
		return
	}
	X := view{x, 1, n, c.kern.tr4}
	c.gemm(&gemmJob{kern: c.kern, c: h, ldc: n, k: k, packA: X.pack, packB: X.pack, acc: true, upper: true}, n, n)
	c.mirrorUpper(h, n)
}

// mirrorUpper copies H[j][i] (j<i) into H[i][j] in cache-friendly blocks.
func (c *CPU) mirrorUpper(h []float32, n int) {
	const bs = 64
	nb := (n + bs - 1) / bs
	w := c.parts(n * n * 4)
	w = min(w, nb)
	parallel(w, func(t int) {
		for bi := t; bi < nb; bi += w {
			i0, i1 := bi*bs, min(bi*bs+bs, n)
			for j0 := 0; j0 <= i0; j0 += bs {
				j1 := min(j0+bs, n)
				for i := i0; i < i1; i++ {
					row := h[i*n : i*n+n]
					for j := j0; j < min(j1, i); j++ {
						row[j] = h[j*n+i]
					}
				}
			}
		}
	})
}

// smallM is the largest m for which NT runs as dot products (decoding a few
// tokens): packing B would cost as much as the product itself.
const smallM = 4

// gemvDots is the small-m NT case: one dot product per output. Each weight
// row is read once and reused from L1/L2 for the m rows of A.
func (c *CPU) gemvDots(out []float32, m, n, k int, acc bool, dot func(i, j int) float32) {
	w := min(c.parts(m*n*k), n)
	parallel(w, func(t int) {
		for j := t * n / w; j < (t+1)*n/w; j++ {
			for i := 0; i < m; i++ {
				s := dot(i, j)
				if acc {
					out[i*n+j] += s
				} else {
					out[i*n+j] = s
				}
			}
		}
	})
}

// gemvAxpy is the m=1 NN/TN case: out += Σ_p a[p*sa]·B[p,:]. Column ranges
// are split at multiples of 64 so every element lands in the same SIMD lane
// position (vector body vs scalar tail) whatever the worker count.
func (c *CPU) gemvAxpy(out, a []float32, sa int, b []float32, n, k int, acc bool) {
	if !acc {
		clear(out)
	}
	const align = 64
	units := (n + align - 1) / align
	w := min(c.parts(n*k), units)
	axpy := c.kern.axpy
	parallel(w, func(t int) {
		j0, j1 := min(t*units/w*align, n), min((t+1)*units/w*align, n)
		if j0 >= j1 {
			return
		}
		o := out[j0:j1]
		for p := 0; p < k; p++ {
			axpy(a[p*sa], b[p*n+j0:p*n+j1], o)
		}
	})
}

// MatMulNTBF16 computes C[m×n] (+)= A[m×k] · Bᵀ where B[n×k] holds bfloat16
// weights (the upper 16 bits of a float32). B is widened while it is packed,
// so it runs the same fp32 kernels.
func (c *CPU) MatMulNTBF16(cc []float32, a []float32, b []uint16, m, n, k int, acc bool) {
	if len(cc) < m*n || len(a) < m*k || len(b) < n*k {
		panic("MatMulNTBF16: slice too short for the given dimensions")
	}
	if trivial(cc, m, n, k, acc) {
		return
	}
	if m <= smallM {
		dot := c.kern.dotBF16
		c.gemvDots(cc, m, n, k, acc, func(i, j int) float32 { return dot(a[i*k:i*k+k], b[j*k:j*k+k]) })
		return
	}
	A := view{a, k, 1, c.kern.tr4}
	Bt := bview{b, k, c.kern.tr4bf}
	c.gemm(&gemmJob{kern: c.kern, c: cc, ldc: n, k: k, packA: A.pack, packB: Bt.pack, acc: acc, aview: &A}, m, n)
}

// BF16ToFloat32 widens bfloat16 values (dst and src of equal length).
func BF16ToFloat32(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = math.Float32frombits(uint32(v) << 16)
	}
}

var _ backend.Backend = (*CPU)(nil)
