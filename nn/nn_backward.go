package nn

import (
	"math"
	"unsafe"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/internal/fastmath"
)

// Float is the element type of the training ops. Every forward op used by
// training has a generic twin (…T) here: instantiated with float32 it calls
// the float32 forward op of this package, so training computes bit for bit
// what inference computes; instantiated with float64 it runs the same
// formulas in double precision, which is what the finite-difference gradient
// checks differentiate. The backward ops are written once, generically.
//
// Conventions (llm.c style): parameter gradients (dw, db, dEmbed) are always
// accumulated (+=); activation gradients are documented per op.
type Float interface{ float32 | float64 }

// colChunk is the width of the column blocks used by column reductions.
const colChunk = 64

// RMSNormForwardT is the generic twin of RMSNormForward.
func RMSNormForwardT[F Float](out, rstd, x, w []F, rows, dim int, eps float64) {
	var ss4 [4]float64
	for r := 0; r < rows; r++ {
		xr := x[r*dim : r*dim+dim]
		if r%4 == 0 && r+4 <= rows {
			// Four rows' sums of squares side by side: each is a serial
			// float64 chain in index order, bound by the add latency.
			x0, x1, x2, x3 := xr, x[(r+1)*dim:(r+2)*dim], x[(r+2)*dim:(r+3)*dim], x[(r+3)*dim:(r+4)*dim]
			var s0, s1, s2, s3 float64
			for i, v := range x0 {
				s0 += float64(v) * float64(v)
				s1 += float64(x1[i]) * float64(x1[i])
				s2 += float64(x2[i]) * float64(x2[i])
				s3 += float64(x3[i]) * float64(x3[i])
			}
			ss4 = [4]float64{s0, s1, s2, s3}
		}
		var ss float64
		if r-r%4+4 <= rows { // in a block of four summed above
			ss = ss4[r%4]
		} else {
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
		}
		rs := 1 / math.Sqrt(ss/float64(dim)+eps)
		if rstd != nil {
			rstd[r] = F(rs)
		}
		or := out[r*dim : r*dim+dim]
		s := F(rs)
		for i, v := range xr {
			or[i] = w[i] * (v * s)
		}
	}
}

// RMSNormBackward back-propagates y = w ⊙ x·rstd. With s = rstd[r]:
//
//	dx_j += s·w_j·dy_j − s³/dim · x_j · Σ_i dy_i·w_i·x_i
//	dw_i += Σ_r dy_i·x_i·s
//
// dx and dw are accumulated. The row sums run in float64; dw is reduced over
// rows in row order by column blocks, so the result does not depend on the
// worker count.
func RMSNormBackward[F Float](dx, dw, dout, x, w, rstd []F, rows, dim int) {
	parallelChunks(rows, 16, func(r0, r1 int) {
		var c4 [4]float64
		for r := r0; r < r1; r++ {
			xr, dy, dxr := x[r*dim:r*dim+dim], dout[r*dim:r*dim+dim], dx[r*dim:r*dim+dim]
			s := float64(rstd[r])
			if (r-r0)%4 == 0 && r+4 <= r1 {
				// Four rows' sums side by side (independent float64
				// chains, each in index order).
				c4 = rmsDot4(x[r*dim:(r+4)*dim], dout[r*dim:(r+4)*dim], w, dim)
			}
			var c float64
			if r-(r-r0)%4+4 <= r1 {
				c = c4[(r-r0)%4]
			} else {
				for i, v := range xr {
					c += float64(dy[i]) * float64(w[i]) * float64(v)
				}
			}
			fs, coef := F(s), F(s*s*s*c/float64(dim))
			for j, v := range xr {
				dxr[j] += fs*w[j]*dy[j] - coef*v
			}
		}
	})
	ParallelFor((dim+colChunk-1)/colChunk, func(b int) {
		c0, c1 := b*colChunk, min(dim, (b+1)*colChunk)
		var acc [colChunk]float64
		for r := 0; r < rows; r++ {
			s := float64(rstd[r])
			xr, dy := x[r*dim+c0:r*dim+c1], dout[r*dim+c0:r*dim+c1]
			for i := range xr {
				acc[i] += float64(dy[i]) * float64(xr[i]) * s
			}
		}
		for i := c0; i < c1; i++ {
			dw[i] += F(acc[i-c0])
		}
	})
}

// rmsDot4 returns Σ_i float64(dy_i)·float64(w_i)·float64(x_i) for four
// consecutive rows of x and dout (dim wide), each summed in index order.
func rmsDot4[F Float](x, dout, w []F, dim int) [4]float64 {
	x0, x1, x2, x3 := x[:dim], x[dim:2*dim], x[2*dim:3*dim], x[3*dim:4*dim]
	d0, d1, d2, d3 := dout[:dim], dout[dim:2*dim], dout[2*dim:3*dim], dout[3*dim:4*dim]
	w = w[:dim]
	var c0, c1, c2, c3 float64
	for i, wv := range w {
		fw := float64(wv)
		c0 += float64(d0[i]) * fw * float64(x0[i])
		c1 += float64(d1[i]) * fw * float64(x1[i])
		c2 += float64(d2[i]) * fw * float64(x2[i])
		c3 += float64(d3[i]) * fw * float64(x3[i])
	}
	return [4]float64{c0, c1, c2, c3}
}

// AddBiasT is the generic twin of AddBias.
func AddBiasT[F Float](x, b []F, rows int) {
	if b == nil {
		return
	}
	n := len(b)
	for r := 0; r < rows; r++ {
		xr := x[r*n : r*n+n]
		for i, v := range b {
			xr[i] += v
		}
	}
}

// AddBiasBackward accumulates db += Σ_rows dout (dout is rows × len(db)).
// Nothing happens when db is nil (no bias).
func AddBiasBackward[F Float](db, dout []F, rows int) {
	if db == nil {
		return
	}
	n := len(db)
	ParallelFor((n+colChunk-1)/colChunk, func(b int) {
		c0, c1 := b*colChunk, min(n, (b+1)*colChunk)
		var acc [colChunk]float64
		for r := 0; r < rows; r++ {
			dr := dout[r*n+c0 : r*n+c1]
			for i, v := range dr {
				acc[i] += float64(v)
			}
		}
		for i := c0; i < c1; i++ {
			db[i] += F(acc[i-c0])
		}
	})
}

// SwiGLUForwardT is the generic twin of SwiGLUForward.
func SwiGLUForwardT[F Float](out, gate, up []F) {
	parallelChunks(len(gate), 1<<14, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			g := gate[i]
			out[i] = g / (1 + expT(-g)) * up[i]
		}
	})
}

// SwiGLUForwardBE is SwiGLUForwardT with the float32 case on the backend's
// row kernels when it has them (backend.RowKernels), which give the same
// bits. be may be nil.
func SwiGLUForwardBE[F Float](be backend.Backend, out, gate, up []F) {
	rk, ok := be.(backend.RowKernels)
	g32, is32 := any(gate).([]float32)
	if !ok || !is32 {
		SwiGLUForwardT(out, gate, up)
		return
	}
	o32, u32 := any(out).([]float32), any(up).([]float32)
	parallelChunks(len(g32), 1<<14, func(i0, i1 int) {
		rk.SiLUMul(o32[i0:i1], g32[i0:i1], u32[i0:i1])
	})
}

// Expfer is a backend that writes dst[i] = fastmath.Expf(src[i]) bit for bit
// (the CPU backend's vector exp).
type Expfer interface {
	Expf(dst, src []float32)
}

// SwiGLUBackwardBE is SwiGLUBackward with the float32 exps computed by the
// backend's vector exp when it has one (the same bits: exp is element-wise
// and the rest of the arithmetic is unchanged).
func SwiGLUBackwardBE[F Float](be backend.Backend, dgate, dup, dout, gate, up []F) {
	ex, ok := be.(Expfer)
	g32, is32 := any(gate).([]float32)
	if !ok || !is32 {
		SwiGLUBackward(dgate, dup, dout, gate, up)
		return
	}
	dg32, du32, do32, u32 := any(dgate).([]float32), any(dup).([]float32), any(dout).([]float32), any(up).([]float32)
	if sb, ok := be.(swigluBackwarder); ok {
		parallelChunks(len(g32), 1<<14, func(i0, i1 int) {
			sb.SwiGLUBackward(dg32[i0:i1], du32[i0:i1], do32[i0:i1], g32[i0:i1], u32[i0:i1])
		})
		return
	}
	parallelChunks(len(g32), 1<<14, func(i0, i1 int) {
		sp := getScratch(i1 - i0)
		defer putScratch(sp)
		e := *sp
		for i := range e {
			e[i] = -g32[i0+i]
		}
		ex.Expf(e, e)
		for j, ej := range e {
			i := i0 + j
			g := g32[i]
			sig := 1 / (1 + ej)
			dy := do32[i]
			dg32[i] = dy * u32[i] * sig * (1 + g*(1-sig))
			du32[i] = dy * g * sig
		}
	})
}

// swigluBackwarder is a backend with the whole float32 SwiGLU backward as
// one vector kernel (the CPU one), bitwise SwiGLUBackward.
type swigluBackwarder interface {
	SwiGLUBackward(dgate, dup, dout, gate, up []float32)
}

// SwiGLUBackward back-propagates out = silu(gate)·up. dgate and dup are
// overwritten (they may not alias dout, gate or up). With σ = sigmoid(g):
// dgate = dout·up·σ·(1 + g·(1−σ)), dup = dout·g·σ.
func SwiGLUBackward[F Float](dgate, dup, dout, gate, up []F) {
	parallelChunks(len(gate), 1<<14, func(i0, i1 int) {
		// In the element type with expT: float32 training uses the fast
		// float32 exp (the float64 one was a tenth of a training step).
		for i := i0; i < i1; i++ {
			g := gate[i]
			sig := 1 / (1 + expT(-g))
			dy := dout[i]
			dgate[i] = dy * up[i] * sig * (1 + g*(1-sig))
			dup[i] = dy * g * sig
		}
	})
}

// EmbeddingForwardT copies the embedding rows of ids into x (len(ids) × dim).
func EmbeddingForwardT[F Float](x, embed []F, ids []int, dim int) {
	for r, id := range ids {
		copy(x[r*dim:(r+1)*dim], embed[id*dim:(id+1)*dim])
	}
}

// EmbeddingBackward accumulates dEmbed[ids[r]] += dx[r], rows in order (so
// repeated ids sum deterministically). With tied embeddings dEmbed is also the
// LM head's gradient, which the head's backward has already accumulated.
func EmbeddingBackward[F Float](dEmbed, dx []F, ids []int, dim int) {
	for r, id := range ids {
		de, dr := dEmbed[id*dim:(id+1)*dim], dx[r*dim:(r+1)*dim]
		for i, v := range dr {
			de[i] += v
		}
	}
}

// DotT is the generic twin of Dot (same four-accumulator order).
func DotT[F Float](a, b []F) F {
	b = b[:len(a)]
	var s0, s1, s2, s3 F
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// parallelChunks splits [0,n) into chunks of at least minChunk items and runs
// f on them in parallel. f must only write outputs of its own items.
func parallelChunks(n, minChunk int, f func(i0, i1 int)) {
	if n <= minChunk {
		if n > 0 {
			f(0, n)
		}
		return
	}
	nc := (n + minChunk - 1) / minChunk
	nc = min(nc, 64)
	chunk := (n + nc - 1) / nc
	ParallelFor(nc, func(c int) {
		i0, i1 := c*chunk, min(n, (c+1)*chunk)
		if i0 < i1 {
			f(i0, i1)
		}
	})
}

// expT is exp in the element type: fastmath.Expf for float32 (the inference
// and training path; the scalar definition of the vectorized backend kernels,
// identical on every platform), math.Exp for float64 (the gradient checks).
func expT[F Float](x F) F {
	if unsafe.Sizeof(x) == 4 {
		return F(fastmath.Expf(float32(x)))
	}
	return F(math.Exp(float64(x)))
}
