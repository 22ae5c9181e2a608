package cpu

import (
	"math"
	"sync"
)

// kernel is one SIMD variant: a register-tile micro-kernel plus its blocking
// (see gemmJob.run; A is packed in mcMax-row chunks) and the row kernels.
// kc fixes the reduction order, so it must stay constant per variant for
// results to be reproducible.
type kernel struct {
	name   string
	mr, nr int
	kc, nc int
	// micro computes an mr×nr tile from an A panel read at a[i*ars + p*acs]
	// and a packed B panel; load adds the old C.
	micro   func(a, b, c []float32, k, ldc int, load bool, ars, acs int)
	dot     func(a, b []float32) float32
	dotBF16 func(a []float32, b []uint16) float32
	axpy    func(alpha float32, x, y []float32)
	tr4     transposer     // packing of row-contiguous operands
	tr4bf   transposerBF16 // same, from bf16
	// Row kernels built on expf (rowexp.go); every variant gives the bits
	// of the pure-Go twins.
	expf     func(dst, src []float32)
	smMax    func(x []float32, scale float32) float32
	smExpSum func(x []float32, mx float32) float64
	smExp    func(x []float32, mx float32) // smExpSum without the sum
	// Attention backward rows (AttnDSScale, AttnMaskedClean).
	dsScale     func(p, d []float32, fs, scale float32)
	maskedClean func(p, d []float32) bool
	swigluBwd   func(dg, du, dout, gate, up []float32) // SwiGLUBackward
	scal        func(x []float32, s float32)
	silu        func(out, gate, up []float32)
	// narrow, if set, is a kernel with a smaller nr giving bitwise identical
	// results (avx512 → avx2 → avx2 12×8: same FMA chain), used when n ≤ its
	// nr and for a ragged last column panel no wider than its nr (the
	// narrowest that fits, with mr no taller than the packed A panels).
	narrow *kernel
}

// transposer writes dst[q*w + r] = src[r*ld + q] for r < rows, q < n: one
// packed panel from rows that are contiguous along q.
type transposer func(dst []float32, w int, src []float32, ld, rows, n int)

// transposerBF16 is transposer for a bf16 source, widened to float32.
type transposerBF16 func(dst []float32, w int, src []uint16, ld, rows, n int)

// view is a strided matrix: element (i, p) is d[i*rs + p*cs].
type view struct {
	d      []float32
	rs, cs int
	tr     transposer
}

// bview is a bf16 matrix stored [rows × cols] row-major (weights), read as
// the transposed operand of NT.
type bview struct {
	d  []uint16
	ld int
	tr transposerBF16
}

// packer fills a packed block: rows r0..r0+rb (padded with zeros to a
// multiple of w) and reduction indices p0..p0+kb, as consecutive panels of
// w rows stored p-major (panel[p*w + r]).
type packer func(dst []float32, r0, rb, p0, kb, w int)

func (v view) pack(dst []float32, r0, rb, p0, kb, w int) {
	if v.rs == 1 && v.cs != 1 {
		// Rows of the block are contiguous along r: walk each source row
		// once, sequentially (prefetch-friendly), and scatter it over the
		// panels. Reading panel by panel instead strides across pages.
		// Panel by panel: the packed panel is written sequentially, the
		// source read at stride cs (one chunk move per k-step; a memmove
		// call per 6..32 floats was most of the packing time of small
		// products).
		for ir := 0; ir < rb; ir += w {
			rows := min(w, rb-ir)
			src := v.d[p0*v.cs+r0+ir:]
			if rows == w {
				copyChunks(dst[ir*kb:], w, src, v.cs, kb, w)
				continue
			}
			// The ragged last panel with its zero padding, one move per
			// k-step (a memmove and a memclr call each cost more).
			padChunks(dst[ir*kb:], w, src, v.cs, kb, rows, w)
		}
		return
	}
	for ir := 0; ir < rb; ir += w {
		panel := dst[ir*kb : ir*kb+w*kb]
		rows := min(w, rb-ir)
		if v.cs == 1 {
			// Rows are contiguous along p: transpose into the panel.
			v.tr(panel, w, v.d[(r0+ir)*v.rs+p0:], v.rs, rows, kb)
		} else {
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

// padChunksGo copies n chunks of rows floats, chunk c from src[c*ss:] to
// dst[c*ds:], each followed by w−rows zeros.
func padChunksGo(dst []float32, ds int, src []float32, ss, n, rows, w int) {
	for c := 0; c < n; c++ {
		copy(dst[c*ds:c*ds+rows], src[c*ss:c*ss+rows])
		clear(dst[c*ds+rows : c*ds+w])
	}
}

// copyChunksGo copies n chunks of w floats, chunk c from src[c*ss:] to
// dst[c*ds:].
func copyChunksGo(dst []float32, ds int, src []float32, ss, n, w int) {
	for c := 0; c < n; c++ {
		copy(dst[c*ds:c*ds+w], src[c*ss:c*ss+w])
	}
}

func transposeGo(dst []float32, w int, src []float32, ld, rows, n int) {
	r := 0
	for ; r+3 < rows; r += 4 {
		o := r * ld
		transpose4(dst[r:], w, src[o:o+n], src[o+ld:o+ld+n], src[o+2*ld:o+2*ld+n], src[o+3*ld:o+3*ld+n])
	}
	for ; r < rows; r++ {
		for q, x := range src[r*ld : r*ld+n] {
			dst[q*w+r] = x
		}
	}
}

func transposeBF16Go(dst []float32, w int, src []uint16, ld, rows, n int) {
	for r := 0; r < rows; r++ {
		for q, x := range src[r*ld : r*ld+n] {
			dst[q*w+r] = math.Float32frombits(uint32(x) << 16)
		}
	}
}

// transpose4 writes dst[p*w + r] = s_r[p] for four equal-length rows, in
// 4×4 blocks through array pointers so that bounds checks are per block.
func transpose4(dst []float32, w int, s0, s1, s2, s3 []float32) {
	kb := len(s0)
	s1, s2, s3 = s1[:kb], s2[:kb], s3[:kb]
	p := 0
	for ; p+3 < kb; p += 4 {
		a, b, c, d := (*[4]float32)(s0[p:]), (*[4]float32)(s1[p:]), (*[4]float32)(s2[p:]), (*[4]float32)(s3[p:])
		o := dst[p*w:]
		o0, o1, o2, o3 := (*[4]float32)(o), (*[4]float32)(o[w:]), (*[4]float32)(o[2*w:]), (*[4]float32)(o[3*w:])
		o0[0], o0[1], o0[2], o0[3] = a[0], b[0], c[0], d[0]
		o1[0], o1[1], o1[2], o1[3] = a[1], b[1], c[1], d[1]
		o2[0], o2[1], o2[2], o2[3] = a[2], b[2], c[2], d[2]
		o3[0], o3[1], o3[2], o3[3] = a[3], b[3], c[3], d[3]
	}
	for ; p < kb; p++ {
		o := (*[4]float32)(dst[p*w:])
		o[0], o[1], o[2], o[3] = s0[p], s1[p], s2[p], s3[p]
	}
}

// pack converts bf16 rows (upper half of a float32) while transposing.
func (v bview) pack(dst []float32, r0, rb, p0, kb, w int) {
	for ir := 0; ir < rb; ir += w {
		panel := dst[ir*kb : ir*kb+w*kb]
		rows := min(w, rb-ir)
		v.tr(panel, w, v.d[(r0+ir)*v.ld+p0:], v.ld, rows, kb)
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
	// causalT > 0 skips tiles whose every element is masked causal
	// attention: row i holds query i mod causalT, which sees columns up to
	// causalPast + i mod causalT.
	causalT, causalPast int
	// direct, when set, is A read in place by the micro-kernel for full row
	// panels (only the ragged last panel is packed).
	direct *view
	aview  *view // A, for the direct decision
}

type workBuf struct{ a, b, tmp []float32 }

var bufPool sync.Pool

// getBuf returns scratch for na packed A values and one kc×nc B block.
func getBuf(kn *kernel, na int) *workBuf {
	nb := kn.kc * ((kn.nc + kn.nr - 1) / kn.nr * kn.nr)
	nt := kn.mr * kn.nr
	w, _ := bufPool.Get().(*workBuf)
	if w == nil {
		w = &workBuf{}
	}
	if len(w.a) < na {
		w.a = make([]float32, na)
	}
	if len(w.b) < nb || len(w.tmp) < nt {
		w.b, w.tmp = make([]float32, nb), make([]float32, nt)
	}
	return w
}

// run computes rows [i0,i1) × columns [j0,j1) of C. Every element is reduced
// over p in the same fixed kc-block order no matter how the ranges are split,
// and one tile is only ever written by one caller: that is what makes the
// result independent of the worker count.
//
// Loop order: row chunk (mcMax) → pc (kc) → pack the chunk's rows of A once
// (or read A in place) → jc (nc) → pack the B block (kept in L2) → ir (mr
// panels of A, one in L1 at a time) → jr. Packing A once per kc block rather
// than once per (jc, kc) block saves its repacking when the worker's column
// range spans several nc blocks.
func (g *gemmJob) run(i0, i1, j0, j1 int) {
	// Row chunks bound the packed-A buffer (mcMax×kc floats) for tall A.
	for c0 := i0; c0 < i1; c0 += mcMax {
		g.runBlock(c0, min(c0+mcMax, i1), j0, j1)
	}
}

// mcMax rows of A are packed at a time: 1.5 MiB per worker at kc=256; B is
// repacked once per chunk, one element per mcMax multiply-adds. A multiple
// of every mr.
const mcMax = 1536

func (g *gemmJob) runBlock(i0, i1, j0, j1 int) {
	kn := g.kern
	mr, nr, kc := kn.mr, kn.nr, kn.kc
	iMax := i1
	if g.upper {
		iMax = min(i1, j1) // rows below the last column are all lower
	}
	if iMax <= i0 {
		return
	}
	direct := g.direct != nil && !g.upper
	na := (iMax - i0 + mr - 1) / mr * mr * min(kc, g.k)
	if direct {
		na = mr * min(kc, g.k)
	}
	w := getBuf(kn, na)
	defer bufPool.Put(w)
	tmp := w.tmp[:mr*nr]
	for pc := 0; pc < g.k; pc += kc {
		kb := min(kc, g.k-pc)
		load := g.acc || pc > 0
		full := iMax - i0 // rows read in place, the rest is packed at w.a[0:]
		if direct {
			full = (iMax - i0) / mr * mr
			if full < iMax-i0 {
				g.packA(w.a, i0+full, iMax-i0-full, pc, kb, mr)
			}
		} else {
			g.packA(w.a, i0, iMax-i0, pc, kb, mr)
		}
		for jc := j0; jc < j1; jc += kn.nc {
			nb := min(kn.nc, j1-jc)
			iEnd := iMax
			if g.upper {
				iEnd = min(iMax, jc+nb)
			}
			if iEnd <= i0 {
				continue
			}
			// A ragged last panel no wider than the narrow kernel's nr is
			// packed at that width and computed with it (same bits, fewer
			// wasted columns).
			nFull, kn2 := nb, kn.narrow
			if rem := nb % nr; kn2 != nil && rem > 0 && rem <= kn2.nr && kn2.mr <= mr {
				for kn2.narrow != nil && rem <= kn2.narrow.nr && kn2.narrow.mr <= mr {
					kn2 = kn2.narrow
				}
				nFull = nb - rem
				g.packB(w.b[nFull*kb:], jc+nFull, rem, pc, kb, kn2.nr)
			} else {
				kn2 = nil
			}
			if nFull > 0 {
				g.packB(w.b, jc, nFull, pc, kb, nr)
			}
			for ir := 0; ir < iEnd-i0; ir += mr {
				mrr := min(mr, iEnd-i0-ir)
				var ap []float32
				ars, acs := 1, mr
				switch {
				case !direct:
					ap = w.a[ir*kb : ir*kb+mr*kb]
				case ir < full:
					d := g.direct
					ap, ars, acs = d.d[(i0+ir)*d.rs+pc*d.cs:], d.rs, d.cs
				default:
					ap = w.a[:mr*kb]
				}
				for jr := 0; jr < nb; jr += nr {
					nrr := min(nr, nb-jr)
					if g.upper && jc+jr+nrr-1 < i0+ir {
						continue // strictly below the diagonal
					}
					if g.causalT > 0 && jc+jr > g.lastVisible(i0+ir, mrr) {
						continue // masked for every row of the tile
					}
					off := (i0+ir)*g.ldc + jc + jr
					if kn2 != nil && jr == nFull {
						bp := w.b[jr*kb : jr*kb+kn2.nr*kb]
						for sub := 0; sub < mrr; sub += kn2.mr {
							g.tile(kn2, ap[sub*ars:], ars, acs, bp, off+sub*g.ldc, min(kn2.mr, mrr-sub), nrr, kb, load, tmp)
						}
						continue
					}
					g.tile(kn, ap, ars, acs, w.b[jr*kb:jr*kb+nr*kb], off, mrr, nrr, kb, load, tmp)
				}
			}
		}
	}
}

// lastVisible is the last column any of rows r0..r0+n-1 sees (causalT > 0).
func (g *gemmJob) lastVisible(r0, n int) int {
	T := g.causalT
	if r0/T != (r0+n-1)/T {
		return g.causalPast + T - 1
	}
	return g.causalPast + (r0+n-1)%T
}

// tile computes the mrr×nrr tile of C at off with kernel kn.
func (g *gemmJob) tile(kn *kernel, ap []float32, ars, acs int, bp []float32, off, mrr, nrr, kb int, load bool, tmp []float32) {
	if mrr == kn.mr && nrr == kn.nr {
		kn.micro(ap, bp, g.c[off:], kb, g.ldc, load, ars, acs)
		return
	}
	// Edge tile: same FMA chain into a scratch tile, then the same single
	// add into C as the full kernel does.
	nr := kn.nr
	kn.micro(ap, bp, tmp, kb, nr, false, ars, acs)
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

// readsDirect reports whether A is better read in place than packed:
// packing A costs about one element per nw multiply-adds, so it only pays
// off for wide column ranges, and the in-place panel must not pile into a
// few L1 sets (4 KiB aliasing, e.g. k = 4096). A with contiguous rows
// (TN) one column panel wide (nw ≤ nr) is read in place whatever its
// stride: packing would read it the same way, once, for nothing (the
// attention's dK = dSᵀ·Q with head dim 16).
func readsDirect(a view, mr, nr, nw, nc int) bool {
	if nw > nc {
		return false
	}
	switch {
	case a.rs == 1 && nw <= nr:
		return true
	case a.cs == 1:
		// mr row streams along k: their offsets must fall in distinct sets.
		var sets [64]uint8
		for i := 0; i < mr; i++ {
			s := (i * a.rs * 4 % 4096) / 64
			if sets[s]++; sets[s] > 2 {
				return false
			}
		}
		return true
	case a.rs == 1:
		// k-steps of mr contiguous values at a stride: they must cycle
		// through all 64 sets.
		s := a.cs * 4 % 4096
		return s != 0 && gcd(s, 4096) <= 64
	}
	return false
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
