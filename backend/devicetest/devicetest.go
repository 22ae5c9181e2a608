// Package devicetest is the conformance suite of backend.Device: every
// operation on odd sizes against a naive float64 reference written here
// (independent of the kernels under test), bad operands that must give
// errors (never panics), and the sticky-error rules. A device package runs
// it from its tests:
//
//	func TestConformance(t *testing.T) {
//		devicetest.Run(t, func(t *testing.T) backend.Device[float32] { return open(t) }, 1e-5)
//	}
//
// Results are compared with a relative tolerance: |got − want| ≤
// tol·(|want| + max|want|), the max taken over the whole output (outputs
// with cancellation are judged against their scale). Errors must name the
// operation that failed (e.g. "MatNT: …").
package devicetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// Run runs the suite on float32 devices; open returns a fresh device for
// each subtest.
func Run(t *testing.T, open func(t *testing.T) backend.Device[float32], tol float64) {
	RunT(t, open, tol)
}

// RunT is Run for a device of either element type (the host's float64
// reference device runs it with a tight tolerance).
func RunT[F backend.Float](t *testing.T, open func(t *testing.T) backend.Device[F], tol float64) {
	tests := []struct {
		name string
		f    func(s *suite[F])
	}{
		{"Buffers", testBuffers[F]},
		{"ZeroCopyAdd", testZeroCopyAdd[F]},
		{"Mat", testMat[F]},
		{"Syrk", testSyrk[F]},
		{"RMSNorm", testRMSNorm[F]},
		{"RMSNormBackward", testRMSNormBackward[F]},
		{"Bias", testBias[F]},
		{"SwiGLU", testSwiGLU[F]},
		{"Embed", testEmbed[F]},
		{"Rope", testRope[F]},
		{"Attention", testAttention[F]},
		{"AttentionGrouped", testAttentionGrouped[F]},
		{"AttentionBackward", testAttentionBackward[F]},
		{"CrossEntropy", testCrossEntropy[F]},
		{"KL", testKL[F]},
		{"SparseKL", testSparseKL[F]},
		{"AdamW", testAdamW[F]},
		{"AdamWNonFinite", testAdamWNonFinite[F]},
		{"SumSquares", testSumSquares[F]},
		{"ScaleSGD", testScaleSGD[F]},
		{"BadInput", testBadInput[F]},
		{"Sticky", testSticky[F]},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &suite[F]{t: t, d: open(t), tol: tol, r: rand.New(rand.NewPCG(uint64(i+1), 7))}
			tc.f(s)
		})
	}
}

type suite[F backend.Float] struct {
	t   *testing.T
	d   backend.Device[F]
	tol float64
	r   *rand.Rand
}

// rnd returns n random values of scale sc, exactly representable in F.
func (s *suite[F]) rnd(n int, sc float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = float64(F(s.r.NormFloat64() * sc))
	}
	return x
}

// up allocates a buffer holding x.
func (s *suite[F]) up(x []float64) backend.View {
	s.t.Helper()
	v, err := s.d.Alloc(len(x))
	if err != nil {
		s.t.Fatalf("Alloc(%d): %v", len(x), err)
	}
	if err := s.d.Upload(v, toF[F](x)); err != nil {
		s.t.Fatalf("Upload: %v", err)
	}
	return v
}

// down syncs and returns the contents of v.
func (s *suite[F]) down(v backend.View) []float64 {
	s.t.Helper()
	out := make([]F, v.N)
	if err := s.d.Download(out, v); err != nil {
		s.t.Fatalf("Download: %v", err)
	}
	x := make([]float64, len(out))
	for i, f := range out {
		x[i] = float64(f)
	}
	return x
}

func (s *suite[F]) sync() {
	s.t.Helper()
	if err := s.d.Sync(); err != nil {
		s.t.Fatalf("Sync: %v", err)
	}
}

func toF[F backend.Float](x []float64) []F {
	o := make([]F, len(x))
	for i, v := range x {
		o[i] = F(v)
	}
	return o
}

func maxAbs(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, math.Abs(v))
	}
	return m
}

// close compares got with want (see the package comment).
func (s *suite[F]) close(what string, got, want []float64) {
	s.t.Helper()
	if len(got) != len(want) {
		s.t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	sc := maxAbs(want)
	bad := 0
	for i := range got {
		if !(math.Abs(got[i]-want[i]) <= s.tol*(math.Abs(want[i])+sc)) {
			if bad < 5 {
				s.t.Errorf("%s[%d] = %.9g, want %.9g", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		s.t.Fatalf("%s: %d of %d values off (tol %g)", what, bad, len(got), s.tol)
	}
}

// closeScalar compares a loss.
func (s *suite[F]) closeScalar(what string, got, want float64) {
	s.t.Helper()
	if !(math.Abs(got-want) <= s.tol*math.Abs(want)+1e-12) {
		s.t.Fatalf("%s = %.12g, want %.12g", what, got, want)
	}
}

// expectErr runs f, which must not panic, then requires an error from
// Sync naming op.
func (s *suite[F]) expectErr(op string, f func()) {
	s.t.Helper()
	s.noPanic(op, f)
	err := s.d.Sync()
	if err == nil {
		s.t.Fatalf("%s: bad operands gave no error", op)
	}
	if !strings.Contains(err.Error(), op) {
		s.t.Errorf("%s: the error does not name the operation: %v", op, err)
	}
	if err := s.d.Sync(); err != nil {
		s.t.Fatalf("%s: Sync did not clear the error: %v", op, err)
	}
}

func (s *suite[F]) noPanic(what string, f func()) {
	s.t.Helper()
	defer func() {
		if p := recover(); p != nil {
			s.t.Fatalf("%s panicked: %v", what, p)
		}
	}()
	f()
}

// ---- buffers and element-wise ops ----

func testBuffers[F backend.Float](s *suite[F]) {
	v, err := s.d.Alloc(11)
	if err != nil {
		s.t.Fatal(err)
	}
	s.close("Alloc (zeroed)", s.down(v), make([]float64, 11))
	x := s.rnd(11, 1)
	if err := s.d.Upload(v.Slice(2, 5), toF[F](x[2:7])); err != nil {
		s.t.Fatal(err)
	}
	want := make([]float64, 11)
	copy(want[2:7], x[2:7])
	s.close("Upload into a slice", s.down(v), want)
	part := make([]F, 3)
	if err := s.d.Download(part, v.Slice(3, 3)); err != nil {
		s.t.Fatal(err)
	}
	for i, p := range part {
		if float64(p) != x[3+i] {
			s.t.Fatalf("Download of a slice: [%d] = %v, want %v", i, p, x[3+i])
		}
	}
	host := toF[F](x)
	r, err := s.d.Resident(host)
	if err != nil {
		s.t.Fatal(err)
	}
	s.close("Resident", s.down(r), x)
	if h, ok := s.d.Host(r.Slice(1, 4)); ok {
		// A host device: the view is the slice itself.
		if len(h) != 4 || &h[0] != &host[1] {
			s.t.Fatalf("Host of a resident slice is not the slice window")
		}
	}
	s.d.Free(v)
	s.sync()
}

func testZeroCopyAdd[F backend.Float](s *suite[F]) {
	a, b := s.rnd(13, 1), s.rnd(13, 1)
	va, vb := s.up(a), s.up(b)
	s.d.Add(va.Slice(2, 9), vb.Slice(3, 9))
	want := append([]float64(nil), a...)
	for i := 0; i < 9; i++ {
		want[2+i] += b[3+i]
	}
	s.close("Add", s.down(va), want)
	s.d.Copy(va.Slice(0, 4), vb.Slice(9, 4))
	copy(want[:4], b[9:13])
	s.close("Copy", s.down(va), want)
	s.d.Zero(va.Slice(5, 3))
	clear(want[5:8])
	s.close("Zero", s.down(va), want)
}

// ---- products ----

func refMat(c, a, b []float64, m, n, k int, ai func(i, p int) int, bi func(p, j int) int, acc bool) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var sum float64
			for p := 0; p < k; p++ {
				sum += a[ai(i, p)] * b[bi(p, j)]
			}
			if acc {
				c[i*n+j] += sum
			} else {
				c[i*n+j] = sum
			}
		}
	}
}

func testMat[F backend.Float](s *suite[F]) {
	// A small product, and one past a CPU GEMM's register tiles and a GPU
	// shader's workgroup tiles (ragged edges in every dimension).
	for _, sz := range [][3]int{{7, 13, 5}, {67, 71, 37}} {
		testMatSize(s, sz[0], sz[1], sz[2])
	}
}

func testMatSize[F backend.Float](s *suite[F], m, n, k int) {
	for _, acc := range []bool{false, true} {
		for _, kind := range []string{"MatNT", "MatNN", "MatTN"} {
			a, b, c := s.rnd(m*k, 1), s.rnd(n*k, 1), s.rnd(m*n+3, 1)
			// Operands at odd offsets inside larger buffers.
			va, vb, vc := s.up(append(s.rnd(3, 1), a...)), s.up(append(s.rnd(1, 1), b...)), s.up(c)
			want := append([]float64(nil), c...)
			cv := vc.Slice(2, m*n)
			w := want[2 : 2+m*n]
			av, bv := va.Slice(3, m*k), vb.Slice(1, n*k)
			switch kind {
			case "MatNT": // a [m×k], b [n×k]
				s.d.MatNT(cv, av, bv, m, n, k, acc)
				refMat(w, a, b, m, n, k, func(i, p int) int { return i*k + p }, func(p, j int) int { return j*k + p }, acc)
			case "MatNN": // a [m×k], b [k×n]
				s.d.MatNN(cv, av, bv, m, n, k, acc)
				refMat(w, a, b, m, n, k, func(i, p int) int { return i*k + p }, func(p, j int) int { return p*n + j }, acc)
			case "MatTN": // a [k×m], b [k×n]
				s.d.MatTN(cv, av, bv, m, n, k, acc)
				refMat(w, a, b, m, n, k, func(i, p int) int { return p*m + i }, func(p, j int) int { return p*n + j }, acc)
			}
			s.close(fmt.Sprintf("%s %dx%dx%d acc=%v", kind, m, n, k, acc), s.down(vc), want)
		}
	}
}

func testSyrk[F backend.Float](s *suite[F]) {
	for _, sz := range [][2]int{{13, 7}, {5, 1}, {9, 24}} {
		n, k := sz[0], sz[1]
		// H must be symmetric on entry.
		x, h := s.rnd(k*n, 1), s.rnd(n*n, 1)
		for i := 0; i < n; i++ {
			for j := 0; j < i; j++ {
				h[i*n+j] = h[j*n+i]
			}
		}
		vx, vh := s.up(x), s.up(h)
		s.d.Syrk(vh, vx, n, k)
		want := append([]float64(nil), h...)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				for p := 0; p < k; p++ {
					want[i*n+j] += x[p*n+i] * x[p*n+j]
				}
			}
		}
		s.close(fmt.Sprintf("Syrk n=%d k=%d", n, k), s.down(vh), want)
	}
}

// ---- normalisation, bias, SwiGLU, embeddings ----

func refRMS(x, w []float64, rows, dim int, eps float64) (out, rstd []float64) {
	out, rstd = make([]float64, rows*dim), make([]float64, rows)
	for r := 0; r < rows; r++ {
		var ss float64
		for i := 0; i < dim; i++ {
			ss += x[r*dim+i] * x[r*dim+i]
		}
		rstd[r] = 1 / math.Sqrt(ss/float64(dim)+eps)
		for i := 0; i < dim; i++ {
			out[r*dim+i] = w[i] * x[r*dim+i] * rstd[r]
		}
	}
	return out, rstd
}

func testRMSNorm[F backend.Float](s *suite[F]) {
	const rows, dim, eps = 5, 11, 1e-5
	x, w := s.rnd(rows*dim, 2), s.rnd(dim, 1)
	want, wantR := refRMS(x, w, rows, dim, eps)
	vx, vw, vo, vr := s.up(x), s.up(w), s.up(s.rnd(rows*dim, 1)), s.up(s.rnd(rows, 1))
	s.d.RMSNorm(vo, vr, vx, vw, rows, dim, eps)
	s.close("RMSNorm out", s.down(vo), want)
	s.close("RMSNorm rstd", s.down(vr), wantR)
	// Without rstd, in place.
	s.d.RMSNorm(vx, backend.View{}, vx, vw, rows, dim, eps)
	s.close("RMSNorm in place", s.down(vx), want)
}

func testRMSNormBackward[F backend.Float](s *suite[F]) {
	const rows, dim = 13, 9
	x, w, dout := s.rnd(rows*dim, 2), s.rnd(dim, 1), s.rnd(rows*dim, 1)
	_, rs := refRMS(x, w, rows, dim, 1e-6)
	for i := range rs {
		rs[i] = float64(F(rs[i])) // the saved rstd is an input
	}
	dx0, dw0 := s.rnd(rows*dim, 1), s.rnd(dim, 1)
	vdx, vdw := s.up(dx0), s.up(dw0)
	s.d.RMSNormBackward(vdx, vdw, s.up(dout), s.up(x), s.up(w), s.up(rs), rows, dim)
	// y_j = w_j·x_j·s: dx_j += s·w_j·dy_j − s³/dim·x_j·Σ_i dy_i·w_i·x_i,
	// dw_j += Σ_r dy_j·x_j·s.
	dx, dw := append([]float64(nil), dx0...), append([]float64(nil), dw0...)
	for r := 0; r < rows; r++ {
		sr := rs[r]
		var c float64
		for i := 0; i < dim; i++ {
			c += dout[r*dim+i] * w[i] * x[r*dim+i]
		}
		for j := 0; j < dim; j++ {
			dx[r*dim+j] += sr*w[j]*dout[r*dim+j] - sr*sr*sr/float64(dim)*x[r*dim+j]*c
			dw[j] += dout[r*dim+j] * x[r*dim+j] * sr
		}
	}
	s.close("RMSNormBackward dx", s.down(vdx), dx)
	s.close("RMSNormBackward dw", s.down(vdw), dw)
}

func testBias[F backend.Float](s *suite[F]) {
	const rows, cols = 13, 7 // past a small binding limit's row chunk
	x, b := s.rnd(rows*cols, 1), s.rnd(cols, 1)
	vx := s.up(x)
	s.d.AddBias(vx, s.up(b), rows)
	s.d.AddBias(vx, backend.View{}, rows) // absent: no-op
	want := append([]float64(nil), x...)
	for r := 0; r < rows; r++ {
		for i := 0; i < cols; i++ {
			want[r*cols+i] += b[i]
		}
	}
	s.close("AddBias", s.down(vx), want)
	db0, dout := s.rnd(cols, 1), s.rnd(rows*cols, 1)
	vdb := s.up(db0)
	s.d.AddBiasBackward(vdb, s.up(dout), rows)
	s.d.AddBiasBackward(backend.View{}, s.up(dout), rows)
	for r := 0; r < rows; r++ {
		for i := 0; i < cols; i++ {
			db0[i] += dout[r*cols+i]
		}
	}
	s.close("AddBiasBackward", s.down(vdb), db0)
}

func testSwiGLU[F backend.Float](s *suite[F]) {
	const n = 101
	g, u, dout := s.rnd(n, 3), s.rnd(n, 1), s.rnd(n, 1)
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	want := make([]float64, n)
	dg, du := make([]float64, n), make([]float64, n)
	for i := range g {
		want[i] = g[i] * sig(g[i]) * u[i]
		// d/dg [g·σ(g)] = σ + g·σ·(1−σ)
		dg[i] = dout[i] * u[i] * (sig(g[i]) + g[i]*sig(g[i])*(1-sig(g[i])))
		du[i] = dout[i] * g[i] * sig(g[i])
	}
	vg, vu, vo := s.up(g), s.up(u), s.up(s.rnd(n, 1))
	s.d.SiLUMul(vo, vg, vu)
	s.close("SiLUMul", s.down(vo), want)
	vdg, vdu := s.up(s.rnd(n, 1)), s.up(s.rnd(n, 1))
	s.d.SwiGLUBackward(vdg, vdu, s.up(dout), vg, vu)
	s.close("SwiGLUBackward dgate", s.down(vdg), dg)
	s.close("SwiGLUBackward dup", s.down(vdu), du)
	s.d.SiLUMul(vg, vg, vu) // in place over gate
	s.close("SiLUMul in place", s.down(vg), want)
}

func testEmbed[F backend.Float](s *suite[F]) {
	const vocab, dim = 7, 5
	ids := []int{3, 0, 6, 3, 2}
	tab := s.rnd(vocab*dim, 1)
	vo := s.up(s.rnd(len(ids)*dim, 1))
	vt := s.up(tab)
	s.d.Embed(vo, vt, ids, dim)
	want := make([]float64, 0, len(ids)*dim)
	for _, id := range ids {
		want = append(want, tab[id*dim:(id+1)*dim]...)
	}
	s.close("Embed", s.down(vo), want)
	dx := s.rnd(len(ids)*dim, 1)
	s.d.EmbedBackward(vt, s.up(dx), ids, dim)
	for r, id := range ids {
		for i := 0; i < dim; i++ {
			tab[id*dim+i] += dx[r*dim+i]
		}
	}
	s.close("EmbedBackward", s.down(vt), tab)
}

// ---- rotary embeddings ----

// ropeTable is a RopeTable built here in float64 (inverse frequencies
// theta^(−2i/d), angles pos·f), stored in float32 as the interface wants.
// Positions past n give nil tables (a table too short).
type ropeTable struct {
	d        int
	inter    bool
	n        int
	cos, sin []float32
}

func newRopeTable(d int, inter bool, n int, theta float64) *ropeTable {
	half := d / 2
	r := &ropeTable{d: d, inter: inter, n: n, cos: make([]float32, n*half), sin: make([]float32, n*half)}
	for p := 0; p < n; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) * math.Pow(theta, -float64(2*i)/float64(d))
			r.cos[p*half+i], r.sin[p*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return r
}

func (r *ropeTable) HeadDimension() int  { return r.d }
func (r *ropeTable) IsInterleaved() bool { return r.inter }
func (r *ropeTable) Table(pos int) (cos, sin []float32) {
	if pos < 0 || pos >= r.n {
		return nil, nil
	}
	h := r.d / 2
	return r.cos[pos*h : pos*h+h], r.sin[pos*h : pos*h+h]
}

// refRope rotates rows [row, row+T) of x [· × nH·d] at positions pos….
func refRope(x []float64, r *ropeTable, sq backend.Seq, nH int, inverse bool) {
	d, half := r.d, r.d/2
	for t := 0; t < sq.T; t++ {
		cos, sin := r.Table(sq.Pos + t)
		for h := 0; h < nH; h++ {
			v := x[((sq.Row+t)*nH+h)*d:]
			for i := 0; i < half; i++ {
				a, b := i, i+half
				if r.inter {
					a, b = 2*i, 2*i+1
				}
				c, sn := float64(cos[i]), float64(sin[i])
				if inverse {
					sn = -sn
				}
				v[a], v[b] = v[a]*c-v[b]*sn, v[b]*c+v[a]*sn
			}
		}
	}
}

func testRope[F backend.Float](s *suite[F]) {
	const nH, d, rows = 3, 6, 11
	seqs := []backend.Seq{{Row: 0, T: 4, Pos: 0}, {Row: 5, T: 3, Pos: 9}, {Row: 8, T: 2, Pos: 1}} // row 4 and 10 untouched
	for _, inter := range []bool{false, true} {
		tab := newRopeTable(d, inter, 12, 10000)
		for _, inverse := range []bool{false, true} {
			x := s.rnd(rows*nH*d, 1)
			vx := s.up(x)
			s.d.Rope(vx, tab, seqs, nH, inverse)
			for _, sq := range seqs {
				refRope(x, tab, sq, nH, inverse)
			}
			s.close(fmt.Sprintf("Rope interleaved=%v inverse=%v", inter, inverse), s.down(vx), x)
		}
		// Forward then inverse (the identity up to the rounding of the
		// float32 table).
		x := s.rnd(rows*nH*d, 1)
		vx := s.up(x)
		s.d.Rope(vx, tab, seqs, nH, false)
		s.d.Rope(vx, tab, seqs, nH, true)
		for _, sq := range seqs {
			refRope(x, tab, sq, nH, false)
			refRope(x, tab, sq, nH, true)
		}
		s.close("Rope round trip", s.down(vx), x)
	}
}

// ---- attention ----

func kvHead(h int, hd backend.Heads) int {
	if hd.KVMap != nil {
		return hd.KVMap[h]
	}
	return h / (hd.NH / hd.NKV)
}

// refAttn is one sequence's causal attention: q [T × NH·D], keys and
// values [(pos+T) × NKV·D]; it returns out [T × NH·D] and probabilities
// [NH × T × (pos+T)].
func refAttn(q, k, v []float64, T, pos int, hd backend.Heads) (out, probs []float64) {
	D, Tk := hd.D, pos+T
	qs, kvs := hd.NH*D, hd.NKV*D
	out, probs = make([]float64, T*qs), make([]float64, hd.NH*T*Tk)
	for h := 0; h < hd.NH; h++ {
		g := kvHead(h, hd)
		for t := 0; t < T; t++ {
			p := probs[(h*T+t)*Tk : (h*T+t+1)*Tk]
			mx := math.Inf(-1)
			for j := 0; j <= pos+t; j++ {
				var dot float64
				for i := 0; i < D; i++ {
					dot += q[t*qs+h*D+i] * k[j*kvs+g*D+i]
				}
				p[j] = dot / math.Sqrt(float64(D))
				mx = max(mx, p[j])
			}
			var sum float64
			for j := 0; j <= pos+t; j++ {
				p[j] = math.Exp(p[j] - mx)
				sum += p[j]
			}
			for j := 0; j <= pos+t; j++ {
				p[j] /= sum
				for i := 0; i < D; i++ {
					out[t*qs+h*D+i] += p[j] * v[j*kvs+g*D+i]
				}
			}
		}
	}
	return out, probs
}

// checkProbs compares the causal part of saved probabilities (the masked
// entries are not specified).
func (s *suite[F]) checkProbs(what string, got, want []float64, nh, T, pos int) {
	s.t.Helper()
	Tk := pos + T
	var g, w []float64
	for h := 0; h < nh; h++ {
		for t := 0; t < T; t++ {
			r := (h*T + t) * Tk
			g = append(g, got[r:r+pos+t+1]...)
			w = append(w, want[r:r+pos+t+1]...)
		}
	}
	s.close(what, g, w)
}

func testAttention[F backend.Float](s *suite[F]) {
	hd := backend.Heads{NH: 5, NKV: 2, D: 3, KVMap: []int{1, 0, 1, 1, 0}}
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	const rows = 10 // row 9 belongs to no sequence
	q, k, v := s.rnd(rows*qd, 1), s.rnd(rows*kvd, 1), s.rnd(rows*kvd, 1)
	vq, vk, vv := s.up(q), s.up(k), s.up(v)
	// B: rows 4..6 at positions 5..7: a cache of 5 rows, then its own rows
	// of k/v (two parts). C: rows 7..8 at positions 2..3, one part of 4
	// rows (2 cached + 2 new).
	cacheB, cacheBv := s.rnd(5*kvd, 1), s.rnd(5*kvd, 1)
	partC, partCv := s.rnd(4*kvd, 1), s.rnd(4*kvd, 1)
	vcb, vcbv, vpc, vpcv := s.up(cacheB), s.up(cacheBv), s.up(partC), s.up(partCv)
	nA, nB := hd.NH*4*4, hd.NH*3*8
	vp := s.up(make([]float64, 2+nA+nB))
	seqs := []backend.AttnSeq{
		{Seq: backend.Seq{Row: 0, T: 4}, Probs: vp.Slice(2, nA)},
		{Seq: backend.Seq{Row: 4, T: 3, Pos: 5}, K: []backend.View{vcb, vk.Rows(4, 7, kvd)}, V: []backend.View{vcbv, vv.Rows(4, 7, kvd)}, Probs: vp.Slice(2+nA, nB)},
		{Seq: backend.Seq{Row: 7, T: 2, Pos: 2}, K: []backend.View{vpc}, V: []backend.View{vpcv}},
	}
	out0 := s.rnd(rows*qd, 1)
	vo := s.up(out0)
	s.d.Attention(vo, vq, vk, vv, seqs, hd)
	want := append([]float64(nil), out0...)
	oA, pA := refAttn(q[:4*qd], k[:4*kvd], v[:4*kvd], 4, 0, hd)
	oB, pB := refAttn(q[4*qd:7*qd], append(append([]float64(nil), cacheB...), k[4*kvd:7*kvd]...), append(append([]float64(nil), cacheBv...), v[4*kvd:7*kvd]...), 3, 5, hd)
	oC, _ := refAttn(q[7*qd:9*qd], partC, partCv, 2, 2, hd)
	copy(want, oA)
	copy(want[4*qd:], oB)
	copy(want[7*qd:], oC)
	s.close("Attention out", s.down(vo), want)
	p := s.down(vp)
	s.checkProbs("Attention probs A", p[2:2+nA], pA, hd.NH, 4, 0)
	s.checkProbs("Attention probs B", p[2+nA:], pB, hd.NH, 3, 5)
}

func testAttentionGrouped[F backend.Float](s *suite[F]) {
	hd := backend.Heads{NH: 4, NKV: 2, D: 5}
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	const rows = 8
	q, k, v := s.rnd(rows*qd, 1), s.rnd(rows*kvd, 1), s.rnd(rows*kvd, 1)
	vo := s.up(make([]float64, rows*qd))
	seqs := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 3}}, {Seq: backend.Seq{Row: 3, T: 5}}}
	s.d.Attention(vo, s.up(q), s.up(k), s.up(v), seqs, hd)
	want := make([]float64, rows*qd)
	for _, sq := range seqs {
		o, _ := refAttn(q[sq.Row*qd:], k[sq.Row*kvd:(sq.Row+sq.T)*kvd], v[sq.Row*kvd:(sq.Row+sq.T)*kvd], sq.T, 0, hd)
		copy(want[sq.Row*qd:], o)
	}
	s.close("Attention (standard groups)", s.down(vo), want)
}

// refAttnBack is the gradient of one sequence's attention (own keys from
// position 0): with p = softmax(s), s_j = q·k_j/√D, o = Σ p_j v_j:
// dv_j += p_j·do, dp_j = do·v_j, ds_j = p_j(dp_j − Σ p·dp),
// dq += Σ ds_j k_j/√D, dk_j += ds_j q/√D.
func refAttnBack(q, k, v, dout []float64, T int, hd backend.Heads) (dq, dk, dv []float64) {
	D := hd.D
	qs, kvs := hd.NH*D, hd.NKV*D
	_, probs := refAttn(q, k, v, T, 0, hd)
	dq, dk, dv = make([]float64, T*qs), make([]float64, T*kvs), make([]float64, T*kvs)
	sc := 1 / math.Sqrt(float64(D))
	for h := 0; h < hd.NH; h++ {
		g := kvHead(h, hd)
		for t := 0; t < T; t++ {
			p := probs[(h*T+t)*T:]
			dp := make([]float64, t+1)
			var sum float64
			for j := 0; j <= t; j++ {
				for i := 0; i < D; i++ {
					dp[j] += dout[t*qs+h*D+i] * v[j*kvs+g*D+i]
					dv[j*kvs+g*D+i] += p[j] * dout[t*qs+h*D+i]
				}
				sum += p[j] * dp[j]
			}
			for j := 0; j <= t; j++ {
				ds := p[j] * (dp[j] - sum) * sc
				for i := 0; i < D; i++ {
					dq[t*qs+h*D+i] += ds * k[j*kvs+g*D+i]
					dk[j*kvs+g*D+i] += ds * q[t*qs+h*D+i]
				}
			}
		}
	}
	return dq, dk, dv
}

func testAttentionBackward[F backend.Float](s *suite[F]) {
	// K/V head 2 is read by no query head: its gradient is zero.
	hd := backend.Heads{NH: 5, NKV: 3, D: 3, KVMap: []int{1, 0, 1, 1, 0}}
	qd, kvd := hd.NH*hd.D, hd.NKV*hd.D
	const rows = 9
	q, k, v, dout := s.rnd(rows*qd, 1), s.rnd(rows*kvd, 1), s.rnd(rows*kvd, 1), s.rnd(rows*qd, 1)
	vq, vk, vv := s.up(q), s.up(k), s.up(v)
	vp := s.up(make([]float64, hd.NH*5*5))
	seqs := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 4}}, {Seq: backend.Seq{Row: 4, T: 5}, Probs: vp}}
	s.d.Attention(s.up(make([]float64, rows*qd)), vq, vk, vv, seqs, hd)                          // fills the saved probabilities
	vdq, vdk, vdv := s.up(s.rnd(rows*qd, 1)), s.up(s.rnd(rows*kvd, 1)), s.up(s.rnd(rows*kvd, 1)) // overwritten
	s.d.AttentionBackward(vdq, vdk, vdv, s.up(dout), vq, vk, vv, seqs, hd)
	dq, dk, dv := make([]float64, rows*qd), make([]float64, rows*kvd), make([]float64, rows*kvd)
	for _, sq := range seqs {
		r0, T := sq.Row, sq.T
		a, b, c := refAttnBack(q[r0*qd:(r0+T)*qd], k[r0*kvd:(r0+T)*kvd], v[r0*kvd:(r0+T)*kvd], dout[r0*qd:(r0+T)*qd], T, hd)
		copy(dq[r0*qd:], a)
		copy(dk[r0*kvd:], b)
		copy(dv[r0*kvd:], c)
	}
	s.close("AttentionBackward dq", s.down(vdq), dq)
	s.close("AttentionBackward dk", s.down(vdk), dk)
	s.close("AttentionBackward dv", s.down(vdv), dv)
}

// ---- losses ----

func lse(z []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = max(mx, v)
	}
	var sum float64
	for _, v := range z {
		sum += math.Exp(v - mx)
	}
	return mx + math.Log(sum)
}

func nTargets(tg []int) int {
	n := 0
	for _, t := range tg {
		if t >= 0 {
			n++
		}
	}
	return n
}

func testCrossEntropy[F backend.Float](s *suite[F]) {
	const vocab, weight = 11, 0.7
	tg := []int{3, -1, 10, 0, -1, 7}
	rows := len(tg)
	z := s.rnd(rows*vocab, 3)
	z[2*vocab+10] = 12 // a confident row
	want, dl := 0.0, make([]float64, rows*vocab)
	n := float64(nTargets(tg))
	for r, t := range tg {
		if t < 0 {
			continue
		}
		row := z[r*vocab : (r+1)*vocab]
		l := lse(row)
		want += l - row[t]
		for j := range row {
			p := math.Exp(row[j] - l)
			if j == t {
				p--
			}
			dl[r*vocab+j] = weight * p / n
		}
	}
	want /= n
	vz := s.up(z)
	vdl := s.up(s.rnd(rows*vocab, 5)) // overwritten
	got, err := s.d.CrossEntropy(vdl, vz, tg, vocab, weight)
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("CrossEntropy", got, want)
	s.close("CrossEntropy dlogits", s.down(vdl), dl)
	got, err = s.d.CrossEntropy(backend.View{}, vz, tg, vocab, weight)
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("CrossEntropy (loss only)", got, want)
	// No targets: loss 0, gradient 0.
	got, err = s.d.CrossEntropy(vdl, vz, []int{-1, -1, -1, -1, -1, -1}, vocab, weight)
	if err != nil || got != 0 {
		s.t.Fatalf("CrossEntropy without targets = %v, %v", got, err)
	}
	s.close("CrossEntropy dlogits without targets", s.down(vdl), make([]float64, rows*vocab))
}

func testKL[F backend.Float](s *suite[F]) {
	const vocab, weight = 13, 0.4
	tg := []int{3, -1, 10, 0, 2}
	rows := len(tg)
	z, zt, dl0 := s.rnd(rows*vocab, 2), s.rnd(rows*vocab, 2), s.rnd(rows*vocab, 0.1)
	n := float64(nTargets(tg))
	want, dl := 0.0, append([]float64(nil), dl0...)
	for r, t := range tg {
		if t < 0 {
			continue
		}
		a, b := zt[r*vocab:(r+1)*vocab], z[r*vocab:(r+1)*vocab]
		la, lb := lse(a), lse(b)
		for j := range a {
			p, q := math.Exp(a[j]-la), math.Exp(b[j]-lb)
			want += p * ((a[j] - la) - (b[j] - lb))
			dl[r*vocab+j] += weight * (q - p) / n
		}
	}
	want /= n
	vdl := s.up(dl0)
	got, err := s.d.KL(vdl, s.up(z), s.up(zt), tg, vocab, weight)
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("KL", got, want)
	s.close("KL dlogits (accumulated)", s.down(vdl), dl)
}

func testSparseKL[F backend.Float](s *suite[F]) {
	const vocab, k, weight = 17, 3, 0.6
	tg := []int{3, -1, 10, 0, 2, -1, 16}
	rows := len(tg)
	z, zt, dl0 := s.rnd(rows*vocab, 2), s.rnd(rows*vocab, 2), s.rnd(rows*vocab, 0.1)
	idx, val := make([]int32, rows*k), make([]float32, rows*k)
	for r := 0; r < rows; r++ {
		// The k largest teacher logits (selection by repeated max).
		used := map[int]bool{}
		for i := 0; i < k; i++ {
			best := -1
			for j := 0; j < vocab; j++ {
				if !used[j] && (best < 0 || zt[r*vocab+j] > zt[r*vocab+best]) {
					best = j
				}
			}
			used[best] = true
			idx[r*k+i], val[r*k+i] = int32(best), float32(zt[r*vocab+best])
		}
	}
	n := float64(nTargets(tg))
	want, dl := 0.0, append([]float64(nil), dl0...)
	for r, t := range tg {
		if t < 0 {
			continue
		}
		a, b := make([]float64, k), make([]float64, k)
		for i := 0; i < k; i++ {
			a[i], b[i] = float64(val[r*k+i]), z[r*vocab+int(idx[r*k+i])]
		}
		la, lb := lse(a), lse(b)
		for i := 0; i < k; i++ {
			p, q := math.Exp(a[i]-la), math.Exp(b[i]-lb)
			want += p * ((a[i] - la) - (b[i] - lb))
			dl[r*vocab+int(idx[r*k+i])] += weight * (q - p) / n
		}
	}
	want /= n
	vdl := s.up(dl0)
	got, err := s.d.SparseKL(vdl, s.up(z), idx, val, k, tg, vocab, weight)
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("SparseKL", got, want)
	s.close("SparseKL dlogits (accumulated)", s.down(vdl), dl)
	got, err = s.d.SparseKL(backend.View{}, s.up(z), idx, val, k, tg, vocab, weight)
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("SparseKL (loss only)", got, want)
}

// ---- AdamW ----

// adamStep returns the scalars of step t as train.AdamW rounds them.
func adamStep(lr, b1, b2, eps, wd float64, t int) backend.AdamWStep {
	return backend.AdamWStep{
		Decay: float32(1 - lr*wd), B1: float32(b1), C1: float32(1 - b1), B2: float32(b2), C2: float32(1 - b2),
		BC2s: float32(math.Sqrt(1 - math.Pow(b2, float64(t)))), Eps: float32(eps),
		NegLR1: float32(-lr / (1 - math.Pow(b1, float64(t)))),
	}
}

func testAdamW[F backend.Float](s *suite[F]) {
	const n = 37
	w := s.rnd(n, 1)
	m, v := make([]float64, n), make([]float64, n)
	vw, vm, vv := s.up(w), s.up(m), s.up(v)
	for step := 1; step <= 4; step++ {
		g := s.rnd(n, 0.1)
		g[5] = 0
		c := adamStep(1e-2, 0.9, 0.999, 1e-8, 0.1, step)
		s.d.AdamW(vw, s.up(g), vm, vv, c)
		for i := range w {
			m[i] = float64(c.B1)*m[i] + float64(c.C1)*g[i]
			v[i] = float64(c.B2)*v[i] + float64(c.C2)*g[i]*g[i]
			w[i] = w[i]*float64(c.Decay) + float64(c.NegLR1)*m[i]/(math.Sqrt(v[i])/float64(c.BC2s)+float64(c.Eps))
		}
	}
	s.sync()
	s.close("AdamW m", s.down(vm), m)
	s.close("AdamW v", s.down(vv), v)
	s.close("AdamW w", s.down(vw), w)
}

func testAdamWNonFinite[F backend.Float](s *suite[F]) {
	const n = 19
	c := adamStep(1e-2, 0.9, 0.999, 1e-8, 0, 1)
	w1, w2 := s.rnd(n, 1), s.rnd(n, 1)
	g1, g2 := s.rnd(n, 0.1), s.rnd(n, 0.1)
	g1[7] = math.Inf(1)
	vw1, vw2 := s.up(w1), s.up(w2)
	s.d.AdamW(vw1, s.up(g1), s.up(make([]float64, n)), s.up(make([]float64, n)), c)
	// The step goes on: the next tensor is updated too.
	s.d.AdamW(vw2, s.up(g2), s.up(make([]float64, n)), s.up(make([]float64, n)), c)
	if err := s.d.Sync(); !errors.Is(err, backend.ErrNonFinite) {
		s.t.Fatalf("Sync after an infinite gradient: %v, want ErrNonFinite", err)
	}
	if err := s.d.Sync(); err != nil {
		s.t.Fatalf("ErrNonFinite not cleared: %v", err)
	}
	got := s.down(vw2)
	for i := range w2 {
		// First step: m̂ = g, v̂ = g², so w moves by ≈ −lr·sign(g).
		want := w2[i] - 1e-2*math.Copysign(1, g2[i])
		if math.Abs(got[i]-want) > 1e-4 {
			s.t.Fatalf("the tensor after the non-finite one was not updated: w[%d] = %v, want ≈ %v", i, got[i], want)
		}
	}
	if got := s.down(vw1); got[0] == w1[0] {
		s.t.Fatalf("the tensor with the non-finite gradient was not updated")
	}
}

// ---- clipping and SGD ----

func testSumSquares[F backend.Float](s *suite[F]) {
	d := s.d
	// Odd sizes, a view at an offset, an empty view, and one large enough
	// for many workgroups of a GPU reduction; scales far apart.
	sizes := []int{7, 0, 1, 300, 200003, 33}
	scales := []float64{1, 1, 3e-3, 50, 0.02, 1e-4}
	var views []backend.View
	var want float64
	for i, n := range sizes {
		x := s.rnd(n, scales[i])
		for _, v := range x {
			want += v * v
		}
		buf := s.up(append(s.rnd(5, 1), x...))
		views = append(views, buf.Slice(5, n))
	}
	got, err := d.SumSquares(views)
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("SumSquares", got, want)
	if got, err := d.SumSquares(nil); err != nil || got != 0 {
		s.t.Fatalf("SumSquares of no views = %v, %v; want 0", got, err)
	}
	// It sees the operations issued before it.
	d.Scale(views[3], 0.5)
	x3 := s.down(views[3])
	var w3 float64
	for _, v := range x3 {
		w3 += v * v
	}
	got, err = d.SumSquares(views[3:4])
	if err != nil {
		s.t.Fatal(err)
	}
	s.closeScalar("SumSquares after Scale", got, w3)
	// Non-finite values propagate.
	nf := s.rnd(40, 1)
	nf[17] = math.Inf(-1)
	if got, err := d.SumSquares([]backend.View{views[0], s.up(nf)}); err != nil || !math.IsInf(got, 1) {
		s.t.Fatalf("SumSquares with −Inf = %v, %v; want +Inf", got, err)
	}
	nf[17] = math.NaN()
	if got, err := d.SumSquares([]backend.View{s.up(nf), views[0]}); err != nil || !math.IsNaN(got) {
		s.t.Fatalf("SumSquares with NaN = %v, %v; want NaN", got, err)
	}
	// Like a loss, it returns a pending ErrNonFinite (and clears it).
	g := s.rnd(9, 1)
	g[4] = math.Inf(1)
	d.AdamW(s.up(s.rnd(9, 1)), s.up(g), s.up(make([]float64, 9)), s.up(make([]float64, 9)), adamStep(1e-3, 0.9, 0.999, 1e-8, 0, 1))
	if _, err := d.SumSquares(views[:1]); !errors.Is(err, backend.ErrNonFinite) {
		s.t.Fatalf("SumSquares after a non-finite AdamW gradient: %v, want ErrNonFinite", err)
	}
	if got, err := d.SumSquares(views[:1]); err != nil || got == 0 {
		s.t.Fatalf("SumSquares after the pending ErrNonFinite: %v, %v", got, err)
	}
}

func testScaleSGD[F backend.Float](s *suite[F]) {
	const n = 1031
	x := s.rnd(n, 2)
	v := s.up(x)
	const c = float32(0.3721)
	s.d.Scale(v.Slice(3, n-5), c)
	want := append([]float64(nil), x...)
	for i := 3; i < n-2; i++ {
		want[i] *= float64(c)
	}
	s.close("Scale", s.down(v), want)

	w, g := s.rnd(n, 1), s.rnd(n, 0.1)
	vw, vg := s.up(w), s.up(g)
	for step := 0; step < 3; step++ {
		lr, wd := 0.05*float64(step+1), 0.1
		s.d.SGD(vw, vg, lr, wd)
		for i := range w {
			w[i] -= lr * (g[i] + wd*w[i])
		}
	}
	s.close("SGD w", s.down(vw), w)
	s.close("SGD g unchanged", s.down(vg), g)
}

// ---- bad operands and sticky errors ----

type foreignBuf struct{}

func (foreignBuf) Len() int { return 100 }

func testBadInput[F backend.Float](s *suite[F]) {
	d := s.d
	if _, err := d.Alloc(-1); err == nil {
		s.t.Fatal("Alloc(-1) gave no error")
	}
	a := s.up(s.rnd(20, 1))
	b := s.up(s.rnd(20, 1))
	c := s.up(make([]float64, 20))
	out := a.Slice(15, 8) // past the end of a
	s.expectErr("MatNT", func() { d.MatNT(c, out, b, 2, 2, 2, false) })
	s.expectErr("MatNT", func() { d.MatNT(c, a, b, 5, 5, 5, false) }) // c too small
	s.expectErr("MatNN", func() { d.MatNN(c, a, b, -1, 2, 2, false) })
	s.expectErr("MatTN", func() { d.MatTN(c, backend.View{Buf: foreignBuf{}, N: 10}, b, 2, 2, 2, false) })
	s.expectErr("MatNT", func() { d.MatNT(c, a.Slice(-2, 4), b, 2, 2, 2, false) })
	s.expectErr("Syrk", func() { d.Syrk(c, a, 5, 4) })
	s.expectErr("Copy", func() { d.Copy(a.Slice(0, 3), b.Slice(0, 4)) })
	s.expectErr("Add", func() { d.Add(a.Slice(0, 3), b.Slice(18, 3)) })
	s.expectErr("RMSNorm", func() { d.RMSNorm(c, backend.View{}, a, b.Slice(0, 3), 4, 5, 1e-5) })
	s.expectErr("RMSNormBackward", func() { d.RMSNormBackward(c, b, a, a, b, backend.View{}, 4, 5) })
	s.expectErr("AddBias", func() { d.AddBias(a, b.Slice(0, 7), 3) })
	s.expectErr("AddBiasBackward", func() { d.AddBiasBackward(b.Slice(0, 7), a, 3) })
	s.expectErr("SiLUMul", func() { d.SiLUMul(a.Slice(0, 5), b.Slice(0, 8), c.Slice(0, 8)) })
	s.expectErr("SwiGLUBackward", func() { d.SwiGLUBackward(a, b, c.Slice(0, 3), a, b) })
	s.expectErr("Embed", func() { d.Embed(c, a, []int{0, 4}, 5) }) // a holds 4 rows of 5
	s.expectErr("EmbedBackward", func() { d.EmbedBackward(a, c, []int{-1}, 5) })
	tab := newRopeTable(4, false, 6, 10000)
	s.expectErr("Rope", func() { d.Rope(a, tab, []backend.Seq{{Row: 0, T: 2, Pos: 5}}, 2, false) }) // positions past the table
	s.expectErr("Rope", func() { d.Rope(a, tab, []backend.Seq{{Row: 2, T: 2}}, 2, false) })         // rows past x
	s.expectErr("Rope", func() { d.Rope(a, newRopeTable(3, false, 6, 10000), []backend.Seq{{T: 1}}, 1, false) })
	hd := backend.Heads{NH: 2, NKV: 1, D: 2}
	own := []backend.AttnSeq{{Seq: backend.Seq{T: 2}}}
	s.expectErr("Attention", func() { d.Attention(c, a, b, b, own, backend.Heads{NH: 3, NKV: 2, D: 2}) })                     // 3 heads in 2 groups, no map
	s.expectErr("Attention", func() { d.Attention(c, a, b, b, own, backend.Heads{NH: 2, NKV: 2, D: 2, KVMap: []int{0, 2}}) }) // map out of range
	s.expectErr("Attention", func() { d.Attention(c, a, b, b, own, backend.Heads{NH: 2, NKV: 1, D: 2, KVMap: []int{0}}) })    // short map
	s.expectErr("Attention", func() { d.Attention(c, a, b, b, []backend.AttnSeq{{Seq: backend.Seq{T: 2, Pos: 3}}}, hd) })     // past without K/V
	s.expectErr("Attention", func() {
		d.Attention(c, a, b, b, []backend.AttnSeq{{Seq: backend.Seq{T: 2, Pos: 3}, K: []backend.View{b.Slice(0, 6)}, V: []backend.View{b.Slice(0, 10)}}}, hd) // K parts too short
	})
	s.expectErr("Attention", func() { d.Attention(c, a, b, b, []backend.AttnSeq{{Seq: backend.Seq{T: 2}, Probs: a.Slice(0, 3)}}, hd) })
	s.expectErr("Attention", func() { d.Attention(c, a, b, b, []backend.AttnSeq{{Seq: backend.Seq{Row: 4, T: 2}}}, hd) }) // rows past q
	s.expectErr("AttentionBackward", func() {
		d.AttentionBackward(a, b, c, a, a, b, b, []backend.AttnSeq{{Seq: backend.Seq{T: 1, Pos: 1}, K: []backend.View{b.Slice(0, 4)}, V: []backend.View{b.Slice(0, 4)}}}, hd)
	})
	s.expectErr("AttentionBackward", func() { d.AttentionBackward(a, b, c, a, a, b, b, []backend.AttnSeq{{Seq: backend.Seq{T: 6}}}, hd) })
	s.expectErr("AdamW", func() { d.AdamW(a, b.Slice(0, 5), c, c, adamStep(1e-3, 0.9, 0.999, 1e-8, 0, 1)) })
	s.expectErr("Scale", func() { d.Scale(a.Slice(15, 8), 2) })
	s.expectErr("SGD", func() { d.SGD(a, b.Slice(0, 5), 0.1, 0) })
	s.expectErr("SGD", func() { d.SGD(a.Slice(-1, 5), b.Slice(0, 5), 0.1, 0) })
	// Free, then use.
	f := s.up(s.rnd(8, 1))
	d.Free(f)
	s.expectErr("Zero", func() { d.Zero(f) })
	// Losses return their errors directly.
	loss := func(op string, f func() (float64, error)) {
		s.t.Helper()
		var err error
		s.noPanic(op, func() { _, err = f() })
		if err == nil {
			s.t.Fatalf("%s: bad operands gave no error", op)
		}
		if err := d.Sync(); err != nil {
			s.t.Fatalf("%s: Sync after a refused loss: %v", op, err)
		}
	}
	loss("CrossEntropy", func() (float64, error) { return d.CrossEntropy(backend.View{}, a, []int{1, 5}, 5, 1) })          // target ≥ vocab
	loss("CrossEntropy", func() (float64, error) { return d.CrossEntropy(backend.View{}, a, []int{1, 2, 3, 4, 0}, 5, 1) }) // logits too small
	loss("CrossEntropy", func() (float64, error) { return d.CrossEntropy(b.Slice(0, 5), a, []int{1, 2}, 5, 1) })           // dlogits too small
	loss("KL", func() (float64, error) { return d.KL(backend.View{}, a, b.Slice(0, 9), []int{1, 2}, 5, 1) })
	loss("SparseKL", func() (float64, error) {
		return d.SparseKL(backend.View{}, a, []int32{0, 7}, []float32{1, 2}, 1, []int{1, 2}, 5, 1) // index ≥ vocab
	})
	loss("SparseKL", func() (float64, error) {
		return d.SparseKL(backend.View{}, a, []int32{0}, []float32{1}, 1, []int{1, 2}, 5, 1) // too few entries
	})
	loss("SumSquares", func() (float64, error) { return d.SumSquares([]backend.View{a, b.Slice(18, 4)}) })
	loss("SumSquares", func() (float64, error) { return d.SumSquares([]backend.View{{Buf: foreignBuf{}, N: 10}}) })
	loss("SumSquares", func() (float64, error) { return d.SumSquares([]backend.View{f}) }) // freed
	// Upload and Download check their views.
	if err := d.Upload(a.Slice(18, 5), make([]F, 5)); err == nil {
		s.t.Fatal("Upload past the end gave no error")
	}
	if err := d.Download(make([]F, 5), a.Slice(18, 2)); err == nil {
		s.t.Fatal("Download of a view too short gave no error")
	}
	s.sync()
}

func testSticky[F backend.Float](s *suite[F]) {
	d := s.d
	x := s.rnd(12, 1)
	a := s.up(x)
	c := s.up(make([]float64, 4))
	d.MatNT(c, a, a, 9, 9, 9, false)     // first error
	d.Copy(a.Slice(0, 2), a.Slice(0, 3)) // second error
	d.Zero(a)                            // skipped
	d.MatNT(c, a, a, 2, 2, 2, false)     // skipped
	out := make([]F, 4)
	if err := d.Download(out, c); err == nil || !strings.Contains(err.Error(), "MatNT") {
		s.t.Fatalf("Download after a failed MatNT: %v, want the MatNT error", err)
	}
	if err := d.Sync(); err != nil {
		// Download may or may not have cleared it; then it is the same one.
		if !strings.Contains(err.Error(), "MatNT") {
			s.t.Fatalf("Sync after the failure: %v, want the MatNT error", err)
		}
	}
	if err := d.Sync(); err != nil {
		s.t.Fatalf("error not cleared: %v", err)
	}
	s.close("operations after an error are skipped", s.down(a), x)
	s.close("operations after an error are skipped (c)", s.down(c), make([]float64, 4))
	// A loss after an error returns it.
	d.Zero(a.Slice(10, 5))
	if _, err := d.CrossEntropy(backend.View{}, a, []int{1}, 3, 1); err == nil || !strings.Contains(err.Error(), "Zero") {
		s.t.Fatalf("loss after a failed Zero: %v, want the Zero error", err)
	}
	_ = d.Sync()
	d.Scale(a.Slice(10, 5), 2)
	if _, err := d.SumSquares([]backend.View{a}); err == nil || !strings.Contains(err.Error(), "Scale") {
		s.t.Fatalf("SumSquares after a failed Scale: %v, want the Scale error", err)
	}
	_ = d.Sync()
	// And the device works again.
	d.MatNT(c, a, a, 2, 2, 2, false)
	want := make([]float64, 4)
	refMat(want, x, x, 2, 2, 2, func(i, p int) int { return i*2 + p }, func(p, j int) int { return j*2 + p }, false)
	s.close("MatNT after recovery", s.down(c), want)
}
