package cpu

import (
	"math"
	"sync"
)

// kernel is one SIMD variant: a register-tile micro-kernel plus its blocking
// (BLIS loop order: jc over nc columns, pc over kc, ic over mc rows, then
// mr×nr tiles) and the row kernels.
type kernel struct {
	name       string
	mr, nr     int
	mc, kc, nc int
	micro      func(a, b, c []float32, k, ldc int, load bool)
	dot        func(a, b []float32) float32
	dotBF16    func(a []float32, b []uint16) float32
	axpy       func(alpha float32, x, y []float32)
}

// view is a strided matrix: element (i, p) is d[i*rs + p*cs].
type view struct {
	d      []float32
	rs, cs int
}

// bview is a bf16 matrix stored [rows × cols] row-major (weights), read as
// the transposed operand of NT.
type bview struct {
	d  []uint16
	ld int
}

// packer fills a packed block: rows r0..r0+rb (padded with zeros to a
// multiple of w) and reduction indices p0..p0+kb, as consecutive panels of
// w rows stored p-major (panel[p*w + r]).
type packer func(dst []float32, r0, rb, p0, kb, w int)

func (v view) pack(dst []float32, r0, rb, p0, kb, w int) {
	for ir := 0; ir < rb; ir += w {
		panel := dst[ir*kb : ir*kb+w*kb]
		rows := min(w, rb-ir)
		switch {
		case v.cs == 1:
			// Rows are contiguous along p: transpose into the panel.
			i := 0
			for ; i+3 < rows; i += 4 {
				base := (r0+ir+i)*v.rs + p0
				s0 := v.d[base : base+kb]
				s1 := v.d[base+v.rs : base+v.rs+kb]
				s2 := v.d[base+2*v.rs : base+2*v.rs+kb]
				s3 := v.d[base+3*v.rs : base+3*v.rs+kb]
				for p := range s0 {
					q := panel[p*w+i : p*w+i+4 : p*w+i+4]
					q[0], q[1], q[2], q[3] = s0[p], s1[p], s2[p], s3[p]
				}
			}
			for ; i < rows; i++ {
				base := (r0+ir+i)*v.rs + p0
				for p, x := range v.d[base : base+kb] {
					panel[p*w+i] = x
				}
			}
		case v.rs == 1:
			// Columns are contiguous along rows: copy.
			for p := 0; p < kb; p++ {
				base := (p0+p)*v.cs + r0 + ir
				copy(panel[p*w:p*w+rows], v.d[base:base+rows])
			}
		default:
			for p := 0; p < kb; p++ {
				for i := 0; i < rows; i++ {
					panel[p*w+i] = v.d[(r0+ir+i)*v.rs+(p0+p)*v.cs]
				}
			}
		}
		if rows < w {
			for p := 0; p < kb; p++ {
				clear(panel[p*w+rows : p*w+w])
			}
		}
	}
}

// pack converts bf16 rows (upper half of a float32) while transposing.
func (v bview) pack(dst []float32, r0, rb, p0, kb, w int) {
	for ir := 0; ir < rb; ir += w {
		panel := dst[ir*kb : ir*kb+w*kb]
		rows := min(w, rb-ir)
		for i := 0; i < rows; i++ {
			base := (r0+ir+i)*v.ld + p0
			for p, x := range v.d[base : base+kb] {
				panel[p*w+i] = math.Float32frombits(uint32(x) << 16)
			}
		}
		if rows < w {
			for p := 0; p < kb; p++ {
				clear(panel[p*w+rows : p*w+w])
			}
		}
	}
}

// gemmJob is C[i,j] (+)= Σ_p A(i,p)·B(p,j) over an index range.
type gemmJob struct {
	kern  *kernel
	c     []float32
	ldc   int
	k     int
	packA packer // rows of A
	packB packer // columns of B, i.e. rows of Bᵀ
	acc   bool
	upper bool // compute only tiles touching the upper triangle (j ≥ i)
}

type workBuf struct{ a, b, tmp []float32 }

var bufPool sync.Pool

func getBuf(kn *kernel) *workBuf {
	na := kn.kc * ((kn.mc + kn.mr - 1) / kn.mr * kn.mr)
	nb := kn.kc * ((kn.nc + kn.nr - 1) / kn.nr * kn.nr)
	nt := kn.mr * kn.nr
	if w, ok := bufPool.Get().(*workBuf); ok {
		if len(w.a) >= na && len(w.b) >= nb && len(w.tmp) >= nt {
			return w
		}
	}
	return &workBuf{a: make([]float32, na), b: make([]float32, nb), tmp: make([]float32, nt)}
}

// run computes rows [i0,i1) × columns [j0,j1) of C. Every element is reduced
// over p in the same fixed kc-block order no matter how the ranges are split,
// and one tile is only ever written by one caller: that is what makes the
// result independent of the worker count.
func (g *gemmJob) run(i0, i1, j0, j1 int) {
	kn := g.kern
	mr, nr, kc := kn.mr, kn.nr, kn.kc
	w := getBuf(kn)
	defer bufPool.Put(w)
	tmp := w.tmp[:mr*nr]
	for jc := j0; jc < j1; jc += kn.nc {
		nb := min(kn.nc, j1-jc)
		iEnd := i1
		if g.upper {
			iEnd = min(i1, jc+nb) // rows below the last column are all lower
		}
		if iEnd <= i0 {
			continue
		}
		for pc := 0; pc < g.k; pc += kc {
			kb := min(kc, g.k-pc)
			load := g.acc || pc > 0
			g.packB(w.b, jc, nb, pc, kb, nr)
			for ic := i0; ic < iEnd; ic += kn.mc {
				mb := min(kn.mc, iEnd-ic)
				g.packA(w.a, ic, mb, pc, kb, mr)
				for ir := 0; ir < mb; ir += mr {
					mrr := min(mr, mb-ir)
					ap := w.a[ir*kb : ir*kb+mr*kb]
					for jr := 0; jr < nb; jr += nr {
						nrr := min(nr, nb-jr)
						if g.upper && jc+jr+nrr-1 < ic+ir {
							continue // strictly below the diagonal
						}
						bp := w.b[jr*kb : jr*kb+nr*kb]
						off := (ic+ir)*g.ldc + jc + jr
						if mrr == mr && nrr == nr {
							kn.micro(ap, bp, g.c[off:], kb, g.ldc, load)
							continue
						}
						// Edge tile: same FMA chain into a scratch tile, then
						// the same single add into C as the full kernel does.
						kn.micro(ap, bp, tmp, kb, nr, false)
						for i := 0; i < mrr; i++ {
							cr := g.c[off+i*g.ldc : off+i*g.ldc+nrr]
							tr := tmp[i*nr : i*nr+nrr]
							if load {
								for j := range cr {
									cr[j] += tr[j]
								}
							} else {
								copy(cr, tr)
							}
						}
					}
				}
			}
		}
	}
}
