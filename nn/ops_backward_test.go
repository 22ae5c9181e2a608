package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Finite-difference checks of every backward op in float64. Each op is
// wrapped as a scalar L = Σ c ⊙ op(inputs) with fixed random c; the analytic
// gradient (backward with dout = c) is compared with central differences.
// Relative error |g − fd| / max(|g|, |fd|, 1e-6) must stay below 1e-5.

func randVec(r *rand.Rand, n int, s float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * s
	}
	return v
}

func dot64(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// fdCheck perturbs every entry of x and compares (L(x+h) − L(x−h))/2h with g.
func fdCheck(t *testing.T, name string, x, g []float64, loss func() float64) {
	t.Helper()
	worst := 0.0
	for i := range x {
		old := x[i]
		h := 1e-6 * math.Max(1, math.Abs(old))
		x[i] = old + h
		lp := loss()
		x[i] = old - h
		lm := loss()
		x[i] = old
		fd := (lp - lm) / (2 * h)
		rel := math.Abs(fd-g[i]) / math.Max(math.Max(math.Abs(fd), math.Abs(g[i])), 1e-6)
		worst = math.Max(worst, rel)
		if rel > 1e-5 {
			t.Errorf("%s[%d]: analytic %.10g, finite difference %.10g (rel %.2g)", name, i, g[i], fd, rel)
			return
		}
	}
	t.Logf("%s: worst relative error %.2g", name, worst)
}

func TestRMSNormBackwardFD(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	rows, dim := 3, 7
	x, w, c := randVec(r, rows*dim, 1), randVec(r, dim, 1), randVec(r, rows*dim, 1)
	loss := func() float64 {
		out := make([]float64, rows*dim)
		RMSNormForwardT(out, nil, x, w, rows, dim, 1e-5)
		return dot64(out, c)
	}
	out, rstd := make([]float64, rows*dim), make([]float64, rows)
	RMSNormForwardT(out, rstd, x, w, rows, dim, 1e-5)
	dx, dw := make([]float64, rows*dim), make([]float64, dim)
	RMSNormBackward(dx, dw, c, x, w, rstd, rows, dim)
	fdCheck(t, "dx", x, dx, loss)
	fdCheck(t, "dw", w, dw, loss)
}

func TestSwiGLUAndBiasBackwardFD(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 1))
	rows, n := 4, 5
	g, u, b, c := randVec(r, rows*n, 2), randVec(r, rows*n, 1), randVec(r, n, 1), randVec(r, rows*n, 1)
	loss := func() float64 {
		gb := append([]float64(nil), g...)
		AddBiasT(gb, b, rows)
		out := make([]float64, rows*n)
		SwiGLUForwardT(out, gb, u)
		return dot64(out, c)
	}
	gb := append([]float64(nil), g...)
	AddBiasT(gb, b, rows)
	dg, du, db := make([]float64, rows*n), make([]float64, rows*n), make([]float64, n)
	SwiGLUBackward(dg, du, c, gb, u)
	AddBiasBackward(db, dg, rows)
	fdCheck(t, "dgate", g, dg, loss)
	fdCheck(t, "dup", u, du, loss)
	fdCheck(t, "dbias", b, db, loss)
}

func TestEmbeddingBackwardFD(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 1))
	V, dim := 6, 4
	ids := []int{2, 0, 2, 5, 2}
	emb, c := randVec(r, V*dim, 1), randVec(r, len(ids)*dim, 1)
	loss := func() float64 {
		x := make([]float64, len(ids)*dim)
		EmbeddingForwardT(x, emb, ids, dim)
		s := 0.0
		for i := range x {
			s += c[i] * x[i] * x[i] // non-linear so repeated ids matter
		}
		return s
	}
	x := make([]float64, len(ids)*dim)
	EmbeddingForwardT(x, emb, ids, dim)
	dx := make([]float64, len(x))
	for i := range x {
		dx[i] = 2 * c[i] * x[i]
	}
	de := make([]float64, V*dim)
	EmbeddingBackward(de, dx, ids, dim)
	fdCheck(t, "dEmbed", emb, de, loss)
}

func TestRopeBackwardFD(t *testing.T) {
	for _, inter := range []bool{false, true} {
		for _, sc := range []*RopeScaling{nil, {Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 4}} {
			r := rand.New(rand.NewPCG(4, 1))
			T, nH, d, pos0 := 5, 3, 8, 2
			rope := NewRope(d, 10000, inter, sc)
			rope.Ensure(pos0 + T)
			x, c := randVec(r, T*nH*d, 1), randVec(r, T*nH*d, 1)
			loss := func() float64 {
				y := append([]float64(nil), x...)
				RopeForwardT(rope, y, T, nH, pos0)
				return dot64(y, c)
			}
			dx := append([]float64(nil), c...)
			RopeBackwardT(rope, dx, T, nH, pos0)
			fdCheck(t, "rope dx", x, dx, loss)
			// The float32 Rope.Backward agrees with the generic twin.
			c32 := make([]float32, len(c))
			for i, v := range c {
				c32[i] = float32(v)
			}
			rope.Backward(c32, T, nH, pos0)
			for i := range c32 {
				if math.Abs(float64(c32[i])-dx[i]) > 1e-5 {
					t.Fatalf("interleaved=%v: float32 Backward[%d] = %g, float64 %g", inter, i, c32[i], dx[i])
				}
			}
		}
	}
}

func TestAttentionBackwardFD(t *testing.T) {
	for _, hc := range []struct {
		nH, nKV int
		kvMap   []int
	}{{2, 2, nil}, {4, 2, nil}, {3, 1, nil}, {5, 4, []int{0, 1, 2, 2, 3}}, {3, 3, []int{2, 0, 2}}} {
		for _, save := range []bool{false, true} {
			r := rand.New(rand.NewPCG(5, uint64(hc.nH)))
			T, d := 5, 4
			nH, nKV := hc.nH, hc.nKV
			q, k, v := randVec(r, T*nH*d, 1), randVec(r, T*nKV*d, 1), randVec(r, T*nKV*d, 1)
			c := randVec(r, T*nH*d, 1)
			loss := func() float64 {
				out := make([]float64, T*nH*d)
				AttentionForwardT(nil, out, nil, q, k, v, T, 0, nH, nKV, hc.kvMap, d)
				return dot64(out, c)
			}
			out := make([]float64, T*nH*d)
			var probs []float64
			if save {
				probs = make([]float64, nH*T*T)
			}
			AttentionForwardT(nil, out, probs, q, k, v, T, 0, nH, nKV, hc.kvMap, d)
			dq, dk, dv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
			AttentionBackward(nil, dq, dk, dv, c, q, k, v, probs, T, nH, nKV, hc.kvMap, d)
			fdCheck(t, "dq", q, dq, loss)
			fdCheck(t, "dk", k, dk, loss)
			fdCheck(t, "dv", v, dv, loss)
		}
	}
}

// In float32, recomputing probabilities in the backward pass must give the
// same gradients, bit for bit, as using the saved ones; and the generic
// float32 forward is AttentionForward itself.
func TestAttentionRecomputeBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	T, nH, nKV, d := 9, 4, 2, 8
	f32 := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(r.NormFloat64())
		}
		return s
	}
	q, k, v, c := f32(T*nH*d), f32(T*nKV*d), f32(T*nKV*d), f32(T*nH*d)
	out, probs := make([]float32, T*nH*d), make([]float32, nH*T*T)
	AttentionForward(out, probs, q, k, v, T, 0, nH, nKV, nil, d)
	grads := func(p []float32) [][]float32 {
		dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
		AttentionBackward(nil, dq, dk, dv, c, q, k, v, p, T, nH, nKV, nil, d)
		return [][]float32{dq, dk, dv}
	}
	a, b := grads(probs), grads(nil)
	for i := range a {
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				t.Fatalf("tensor %d[%d]: saved %v recomputed %v", i, j, a[i][j], b[i][j])
			}
		}
	}
}

// rmsNormRowLoops is the one-row-at-a-time RMSNorm forward and the row part
// of its backward, which the four-row versions must reproduce bit for bit.
func rmsNormRowLoops(out, rstd, x, w, dx, dout []float32, rows, dim int, eps float64) {
	for r := 0; r < rows; r++ {
		xr := x[r*dim : r*dim+dim]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		rs := 1 / math.Sqrt(ss/float64(dim)+eps)
		rstd[r] = float32(rs)
		s := float32(rs)
		for i, v := range xr {
			out[r*dim+i] = w[i] * (v * s)
		}
	}
	for r := 0; r < rows; r++ {
		xr, dy := x[r*dim:r*dim+dim], dout[r*dim:r*dim+dim]
		s := float64(rstd[r])
		var c float64
		for i, v := range xr {
			c += float64(dy[i]) * float64(w[i]) * float64(v)
		}
		fs, coef := float32(s), float32(s*s*s*c/float64(dim))
		for j, v := range xr {
			dx[r*dim+j] += fs*w[j]*dy[j] - coef*v
		}
	}
}

// TestRMSNormRowsBitwise: RMSNorm forward and backward (dx) against the
// row-by-row loops, row counts across the four-row blocks and the
// backward's 16-row chunks.
func TestRMSNormRowsBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, dim := range []int{1, 5, 64, 128} {
		for _, rows := range []int{1, 3, 4, 5, 7, 8, 9, 16, 17, 21, 33, 64} {
			rnd := func(n int, s float64) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = float32(s * r.NormFloat64())
				}
				return v
			}
			x, w, dout, dx0 := rnd(rows*dim, 3), rnd(dim, 1), rnd(rows*dim, 0.1), rnd(rows*dim, 1)
			out, rstd, dx := make([]float32, rows*dim), make([]float32, rows), append([]float32(nil), dx0...)
			wout, wrstd, wdx := make([]float32, rows*dim), make([]float32, rows), append([]float32(nil), dx0...)
			RMSNormForwardT(out, rstd, x, w, rows, dim, 1e-5)
			RMSNormBackward(dx, make([]float32, dim), dout, x, w, rstd, rows, dim)
			rmsNormRowLoops(wout, wrstd, x, w, wdx, dout, rows, dim, 1e-5)
			for _, c := range []struct {
				n         string
				got, want []float32
			}{{"out", out, wout}, {"rstd", rstd, wrstd}, {"dx", dx, wdx}} {
				for i := range c.got {
					if math.Float32bits(c.got[i]) != math.Float32bits(c.want[i]) {
						t.Fatalf("dim=%d rows=%d %s[%d] = %g, row loop %g", dim, rows, c.n, i, c.got[i], c.want[i])
					}
				}
			}
		}
	}
}

// TestRopeBitwise: the rotation against the one-loop form with the pairing
// chosen per element, both pairings and both directions.
func TestRopeBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, inter := range []bool{false, true} {
		for _, d := range []int{2, 8, 16, 64} {
			rope := NewRope(d, 10000, inter, nil)
			const T, nH, pos0 = 7, 3, 5
			rope.Ensure(pos0 + T)
			x := make([]float32, T*nH*d)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			for _, sign := range []float32{1, -1} {
				want := append([]float32(nil), x...)
				for tt := 0; tt < T; tt++ {
					cos, sin := rope.Table(pos0 + tt)
					for h := 0; h < nH; h++ {
						v := want[(tt*nH+h)*d : (tt*nH+h)*d+d]
						for i := 0; i < d/2; i++ {
							a, b := i, i+d/2
							if inter {
								a, b = 2*i, 2*i+1
							}
							c, s := cos[i], sign*sin[i]
							x0, x1 := v[a], v[b]
							v[a] = x0*c - x1*s
							v[b] = x1*c + x0*s
						}
					}
				}
				got := append([]float32(nil), x...)
				ropeApplyT(rope, got, T, nH, pos0, sign)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("interleaved=%v d=%d sign=%g: [%d] = %g, loop %g", inter, d, sign, i, got[i], want[i])
					}
				}
			}
		}
	}
}
