//go:build vulkan && cgo

package vulkan

// Dev (backend.Device[float32]) against float64 references written here.
// Every comparison is |got − ref| ≤ devTol·scale with scale the sum of the
// magnitudes of the terms that make the element (so float32 rounding in
// any order stays within it).

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

const devTol = 1e-5

func openDev(t *testing.T) *Dev {
	t.Helper()
	return open(t, Options{}).F32()
}

func put(t *testing.T, x *Dev, v []float32) backend.View {
	t.Helper()
	b, err := x.Resident(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// padded uploads v at offset 3 of a larger buffer (views with offsets).
func padded(t *testing.T, x *Dev, v []float32) backend.View {
	t.Helper()
	b := put(t, x, append(append(make([]float32, 3), v...), 1, 2))
	return b.Slice(3, len(v))
}

func get(t *testing.T, x *Dev, v backend.View) []float32 {
	t.Helper()
	out := make([]float32, v.N)
	if err := x.Download(out, v); err != nil {
		t.Fatal(err)
	}
	return out
}

// cmp checks got against ref within devTol·scale[i] (scale nil: |ref|,
// floored at 1e-3 of the largest |ref|).
func cmp(t *testing.T, name string, got []float32, ref, scale []float64) {
	t.Helper()
	mx := 0.0
	for _, v := range ref {
		mx = math.Max(mx, math.Abs(v))
	}
	worst, at := 0.0, -1
	for i := range ref {
		s := math.Max(math.Abs(ref[i]), 1e-3*mx)
		if scale != nil {
			s = math.Max(scale[i], 1e-30)
		}
		e := math.Abs(float64(got[i])-ref[i]) / math.Max(s, 1e-30)
		if e > worst || math.IsNaN(e) {
			worst, at = e, i
		}
	}
	if worst > devTol {
		t.Errorf("%s: relative error %.2e at %d (got %v, want %v)", name, worst, at, got[at], ref[at])
	}
}

func f64(v []float32) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(x)
	}
	return o
}

func TestDevBuffers(t *testing.T) {
	x := openDev(t)
	if !strings.HasPrefix(x.Name(), "vulkan: ") {
		t.Errorf("name %q", x.Name())
	}
	if _, ok := x.Host(backend.View{}); ok {
		t.Error("Host: true on a GPU device")
	}
	a, err := x.Alloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range get(t, x, a) {
		if v != 0 {
			t.Fatalf("Alloc: element %d is %v", i, v)
		}
	}
	src := randVec(rand.New(rand.NewPCG(1, 1)), 37)
	if err := x.Upload(a.Slice(100, 37), src); err != nil {
		t.Fatal(err)
	}
	got := get(t, x, a.Slice(99, 39))
	if got[0] != 0 || got[38] != 0 {
		t.Error("upload wrote outside its view")
	}
	for i := range src {
		if got[i+1] != src[i] {
			t.Fatalf("round trip: %v != %v", got[i+1], src[i])
		}
	}
	// Upload in order with recorded work: copy, then overwrite the source.
	b, _ := x.Alloc(37)
	x.Copy(b, a.Slice(100, 37))
	if err := x.Upload(a.Slice(100, 37), make([]float32, 37)); err != nil {
		t.Fatal(err)
	}
	for i, v := range get(t, x, b) {
		if v != src[i] {
			t.Fatalf("copy before upload: %v != %v", v, src[i])
		}
	}
	x.Zero(b.Slice(5, 10))
	for i, v := range get(t, x, b) {
		if (i >= 5 && i < 15) != (v == 0) {
			t.Fatalf("zero: element %d is %v", i, v)
		}
	}
	z, err := x.Alloc(0)
	if err != nil || z.N != 0 {
		t.Fatalf("Alloc(0): %v %v", z, err)
	}
	x.Free(z)
	x.Free(a)
	x.Free(b)
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestDevAddCopyBias(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(2, 2))
	for _, sh := range [][2]int{{1, 1}, {7, 13}, {300, 67}, {3, 1000}} {
		rows, cols := sh[0], sh[1]
		a, b, bias := randVec(r, rows*cols), randVec(r, rows*cols), randVec(r, cols)
		va, vb, vbias := padded(t, x, a), padded(t, x, b), padded(t, x, bias)
		x.Add(va, vb)
		ref, sc := make([]float64, rows*cols), make([]float64, rows*cols)
		for i := range ref {
			ref[i] = float64(a[i]) + float64(b[i])
			sc[i] = math.Abs(float64(a[i])) + math.Abs(float64(b[i]))
		}
		cmp(t, "add", get(t, x, va), ref, sc)
		x.AddBias(vb, vbias, rows)
		for i := range ref {
			ref[i] = float64(b[i]) + float64(bias[i%cols])
			sc[i] = math.Abs(float64(b[i])) + math.Abs(float64(bias[i%cols]))
		}
		cmp(t, "addbias", get(t, x, vb), ref, sc)
		x.AddBias(vb, backend.View{}, rows) // absent: no-op
		db0 := randVec(r, cols)
		db := padded(t, x, db0)
		x.AddBiasBackward(db, va, rows)
		refB, scB := make([]float64, cols), make([]float64, cols)
		for c := 0; c < cols; c++ {
			refB[c], scB[c] = float64(db0[c]), math.Abs(float64(db0[c]))
			for i := 0; i < rows; i++ {
				v := float64(a[i*cols+c]) + float64(b[i*cols+c])
				refB[c] += v
				scB[c] += math.Abs(v)
			}
		}
		cmp(t, "addbias backward", get(t, x, db), refB, scB)
	}
	v := put(t, x, make([]float32, 10))
	x.Copy(v.Slice(0, 5), v.Slice(3, 5))
	if err := x.Sync(); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("overlapping copy: %v", err)
	}
}

func TestDevMatmul(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(3, 3))
	for _, sh := range [][3]int{{1, 1, 1}, {37, 29, 83}, {5, 131, 7}, {70, 3, 200}} {
		m, n, k := sh[0], sh[1], sh[2]
		for _, v := range []struct {
			name   string
			tA, tB bool
			f      func(c, a, b backend.View, m, n, k int, acc bool)
		}{{"NT", false, true, x.MatNT}, {"NN", false, false, x.MatNN}, {"TN", true, false, x.MatTN}} {
			for _, acc := range []bool{false, true} {
				a, b, c0 := randVec(r, m*k), randVec(r, n*k), randVec(r, m*n)
				vc := padded(t, x, c0)
				v.f(vc, padded(t, x, a), padded(t, x, b), m, n, k, acc)
				ref, scale := gemmRef(v.tA, v.tB, c0, a, b, m, n, k, acc)
				cmp(t, v.name, get(t, x, vc), ref, scale)
			}
		}
		// Syrk: H += XᵀX, exactly symmetric.
		xs, h0 := randVec(r, k*m), randVec(r, m*m)
		for i := 0; i < m; i++ {
			for j := 0; j < i; j++ {
				h0[i*m+j] = h0[j*m+i]
			}
		}
		vh := padded(t, x, h0)
		x.Syrk(vh, padded(t, x, xs), m, k)
		ref, scale := gemmRef(true, false, h0, xs, xs, m, m, k, true)
		got := get(t, x, vh)
		cmp(t, "syrk", got, ref, scale)
		for i := 0; i < m; i++ {
			for j := 0; j < i; j++ {
				if got[i*m+j] != got[j*m+i] {
					t.Fatalf("syrk not symmetric at %d,%d", i, j)
				}
			}
		}
	}
	// k = 0 without acc zeroes C.
	vc := put(t, x, []float32{1, 2, 3, 4})
	x.MatNT(vc, backend.View{}, backend.View{}, 2, 2, 0, false)
	for _, v := range get(t, x, vc) {
		if v != 0 {
			t.Fatal("k = 0: C not zeroed")
		}
	}
}

func TestDevRMSNormSwiGLU(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(4, 4))
	for _, sh := range [][2]int{{1, 1}, {13, 77}, {3, 1001}} {
		rows, dim := sh[0], sh[1]
		xs, w, dy := randVec(r, rows*dim), randVec(r, dim), randVec(r, rows*dim)
		vx, vw := padded(t, x, xs), padded(t, x, w)
		vo, _ := x.Alloc(rows * dim)
		vr, _ := x.Alloc(rows)
		x.RMSNorm(vo, vr, vx, vw, rows, dim, 1e-5)
		ref, rs := make([]float64, rows*dim), make([]float64, rows)
		for i := 0; i < rows; i++ {
			var ss float64
			for j := 0; j < dim; j++ {
				ss += float64(xs[i*dim+j]) * float64(xs[i*dim+j])
			}
			rs[i] = 1 / math.Sqrt(ss/float64(dim)+1e-5)
			for j := 0; j < dim; j++ {
				ref[i*dim+j] = float64(w[j]) * float64(xs[i*dim+j]) * rs[i]
			}
		}
		cmp(t, "rmsnorm", get(t, x, vo), ref, nil)
		cmp(t, "rstd", get(t, x, vr), rs, nil)
		// backward: dx += …, dw += …
		dx0, dw0 := randVec(r, rows*dim), randVec(r, dim)
		vdx, vdw := padded(t, x, dx0), padded(t, x, dw0)
		x.RMSNormBackward(vdx, vdw, padded(t, x, dy), vx, vw, vr, rows, dim)
		rdx, sdx := f64(dx0), make([]float64, rows*dim)
		rdw, sdw := f64(dw0), make([]float64, dim)
		for j := range sdw {
			sdw[j] = math.Abs(rdw[j])
		}
		for i := 0; i < rows; i++ {
			s := rs[i]
			var c, ca float64
			for j := 0; j < dim; j++ {
				v := float64(dy[i*dim+j]) * float64(w[j]) * float64(xs[i*dim+j])
				c += v
				ca += math.Abs(v)
			}
			for j := 0; j < dim; j++ {
				a := s * float64(w[j]) * float64(dy[i*dim+j])
				b := s * s * s / float64(dim) * float64(xs[i*dim+j])
				rdx[i*dim+j] += a - b*c
				sdx[i*dim+j] = math.Abs(float64(dx0[i*dim+j])) + math.Abs(a) + math.Abs(b)*ca
				v := float64(dy[i*dim+j]) * float64(xs[i*dim+j]) * s
				rdw[j] += v
				sdw[j] += math.Abs(v)
			}
		}
		cmp(t, "rmsnorm dx", get(t, x, vdx), rdx, sdx)
		cmp(t, "rmsnorm dw", get(t, x, vdw), rdw, sdw)

		n := rows * dim
		g, u, do := randVec(r, n), randVec(r, n), randVec(r, n)
		vg, vu := padded(t, x, g), padded(t, x, u)
		vout, _ := x.Alloc(n)
		x.SiLUMul(vout, vg, vu)
		rs2, rdg, rdu := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range rs2 {
			gg, uu, d := float64(g[i]), float64(u[i]), float64(do[i])
			sg := 1 / (1 + math.Exp(-gg))
			rs2[i] = gg * sg * uu
			rdg[i] = d * uu * sg * (1 + gg*(1-sg))
			rdu[i] = d * gg * sg
		}
		cmp(t, "silu·up", get(t, x, vout), rs2, nil)
		vdg, _ := x.Alloc(n)
		vdu, _ := x.Alloc(n)
		x.SwiGLUBackward(vdg, vdu, padded(t, x, do), vg, vu)
		cmp(t, "swiglu dgate", get(t, x, vdg), rdg, nil)
		cmp(t, "swiglu dup", get(t, x, vdu), rdu, nil)
		x.SiLUMul(vg, vg, vu) // in place
		cmp(t, "silu·up in place", get(t, x, vg), rs2, nil)
	}
}

// testRope is a RopeTable built here in float64 (rounded once).
type testRope struct {
	d        int
	inter    bool
	cos, sin [][]float32
	calls    int
}

func newTestRope(d int, inter bool, n int) *testRope {
	r := &testRope{d: d, inter: inter}
	for p := 0; p < n; p++ {
		c, s := make([]float32, d/2), make([]float32, d/2)
		for i := range c {
			a := float64(p) / math.Pow(10000, float64(2*i)/float64(d))
			c[i], s[i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		r.cos, r.sin = append(r.cos, c), append(r.sin, s)
	}
	return r
}

func (r *testRope) HeadDimension() int  { return r.d }
func (r *testRope) IsInterleaved() bool { return r.inter }
func (r *testRope) Table(p int) ([]float32, []float32) {
	r.calls++
	return r.cos[p], r.sin[p]
}

func TestDevRope(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(5, 5))
	seqs := []backend.Seq{{Row: 0, T: 3, Pos: 0}, {Row: 5, T: 4, Pos: 7}, {Row: 3, T: 2, Pos: 1}}
	const rows, nh = 9, 3
	for _, inter := range []bool{false, true} {
		for _, hd := range []int{2, 8, 64} {
			rp := newTestRope(hd, inter, 11)
			for _, inv := range []bool{false, true} {
				xs := randVec(r, rows*nh*hd)
				vx := padded(t, x, xs)
				x.Rope(vx, rp, seqs, nh, inv)
				ref, sc := f64(xs), make([]float64, len(xs))
				for i := range sc {
					sc[i] = math.Abs(ref[i]) // rows outside the sequences stay
				}
				sign := 1.0
				if inv {
					sign = -1
				}
				for _, s := range seqs {
					for tt := 0; tt < s.T; tt++ {
						for h := 0; h < nh; h++ {
							base := ((s.Row+tt)*nh + h) * hd
							for i := 0; i < hd/2; i++ {
								a, b := base+i, base+i+hd/2
								if inter {
									a, b = base+2*i, base+2*i+1
								}
								c, sn := float64(rp.cos[s.Pos+tt][i]), sign*float64(rp.sin[s.Pos+tt][i])
								x0, x1 := float64(xs[a]), float64(xs[b])
								ref[a], ref[b] = x0*c-x1*sn, x1*c+x0*sn
								sc[a] = math.Abs(x0) + math.Abs(x1)
								sc[b] = sc[a]
							}
						}
					}
				}
				cmp(t, "rope", get(t, x, vx), ref, sc)
			}
			// The table is uploaded once per table and length.
			calls := rp.calls
			x.Rope(put(t, x, make([]float32, rows*nh*hd)), rp, seqs, nh, false)
			if err := x.Sync(); err != nil {
				t.Fatal(err)
			}
			if rp.calls != calls {
				t.Errorf("rope table read again (%d calls after %d)", rp.calls, calls)
			}
		}
	}
	// Many tables: at most maxRopeTables stay on the device, and a table
	// evicted and used again is uploaded again and still right.
	first := newTestRope(8, false, 4)
	xs := randVec(r, 4*8)
	for i := 0; i < 3*maxRopeTables; i++ {
		rp := first
		if i > 0 {
			rp = newTestRope(8, false, 4)
		}
		x.Rope(put(t, x, xs), rp, []backend.Seq{{T: 4}}, 1, false)
	}
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := len(x.d.ropes); n > maxRopeTables {
		t.Errorf("%d rope tables cached", n)
	}
	calls := first.calls
	vx := put(t, x, xs)
	x.Rope(vx, first, []backend.Seq{{T: 4}}, 1, true)
	x.Rope(vx, first, []backend.Seq{{T: 4}}, 1, false) // the inverse undoes it
	if first.calls == calls {
		t.Error("an evicted table was not uploaded again")
	}
	ref, sc := f64(xs), make([]float64, len(xs))
	for i := range sc {
		sc[i] = math.Abs(ref[i]) + math.Abs(float64(xs[i^4])) // the pair (i, i+d/2) of head dim 8
	}
	cmp(t, "rope round trip after eviction", get(t, x, vx), ref, sc)
}

// attnRef is causal attention in float64 over one sequence: q [T × NH·D],
// keys/values [S × NKV·D] (S = pos+T); returns out and probs [NH × T × S].
func seqAttnRef(q, k, v []float32, T, pos int, h backend.Heads, kvmap []int) (out, probs, oscale []float64) {
	S := pos + T
	out, oscale, probs = make([]float64, T*h.NH*h.D), make([]float64, T*h.NH*h.D), make([]float64, h.NH*T*S)
	sc := 1 / math.Sqrt(float64(h.D))
	for hh := 0; hh < h.NH; hh++ {
		kh := kvmap[hh]
		for t := 0; t < T; t++ {
			last := pos + t
			p := probs[(hh*T+t)*S : (hh*T+t)*S+S]
			mx := math.Inf(-1)
			for j := 0; j <= last; j++ {
				var s float64
				for d := 0; d < h.D; d++ {
					s += float64(q[(t*h.NH+hh)*h.D+d]) * float64(k[(j*h.NKV+kh)*h.D+d])
				}
				p[j] = s * sc
				mx = math.Max(mx, p[j])
			}
			var sum float64
			for j := 0; j <= last; j++ {
				p[j] = math.Exp(p[j] - mx)
				sum += p[j]
			}
			for j := 0; j <= last; j++ {
				p[j] /= sum
				for d := 0; d < h.D; d++ {
					vv := float64(v[(j*h.NKV+kh)*h.D+d])
					out[(t*h.NH+hh)*h.D+d] += p[j] * vv
					oscale[(t*h.NH+hh)*h.D+d] += p[j] * math.Abs(vv)
				}
			}
		}
	}
	return
}

func kvMapOf(h backend.Heads) []int {
	if h.KVMap != nil {
		return h.KVMap
	}
	m := make([]int, h.NH)
	for i := range m {
		m[i] = i / (h.NH / h.NKV)
	}
	return m
}

func TestDevAttention(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(6, 6))
	for _, h := range []backend.Heads{{NH: 4, NKV: 2, D: 8}, {NH: 3, NKV: 2, D: 5, KVMap: []int{1, 0, 1}}, {NH: 2, NKV: 2, D: 64}} {
		qs, kvs := h.NH*h.D, h.NKV*h.D
		kvmap := kvMapOf(h)
		// Three own-key sequences packed in rows 0..11 and two with a
		// cache (Pos > 0, K/V in parts) in rows 12..16.
		own := [][2]int{{0, 5}, {5, 1}, {6, 6}}
		const rows = 17
		q, k, v := randVec(r, rows*qs), randVec(r, rows*kvs), randVec(r, rows*kvs)
		vq, vk, vv := padded(t, x, q), padded(t, x, k), padded(t, x, v)
		vout, _ := x.Alloc(rows * qs)
		var seqs []backend.AttnSeq
		var probs []backend.View
		for _, o := range own {
			p, _ := x.Alloc(h.NH * o[1] * o[1])
			probs = append(probs, p)
			seqs = append(seqs, backend.AttnSeq{Seq: backend.Seq{Row: o[0], T: o[1]}, Probs: p})
		}
		// cached sequences: past keys in two parts, then own rows
		type cached struct {
			row, T, pos int
			pk, pv      []float32
		}
		cs := []cached{{12, 3, 4, randVec(r, 4*kvs), randVec(r, 4*kvs)}, {15, 2, 9, randVec(r, 9*kvs), randVec(r, 9*kvs)}}
		for _, c := range cs {
			split := c.pos / 2
			kp := []backend.View{padded(t, x, c.pk[:split*kvs]), padded(t, x, c.pk[split*kvs:]), vk.Rows(c.row, c.row+c.T, kvs)}
			vp := []backend.View{padded(t, x, c.pv[:(split+1)*kvs]), padded(t, x, c.pv[(split+1)*kvs:]), vv.Rows(c.row, c.row+c.T, kvs)}
			p, _ := x.Alloc(h.NH * c.T * (c.pos + c.T))
			probs = append(probs, p)
			seqs = append(seqs, backend.AttnSeq{Seq: backend.Seq{Row: c.row, T: c.T, Pos: c.pos}, K: kp, V: vp, Probs: p})
		}
		x.Attention(vout, vq, vk, vv, seqs, h)
		got := get(t, x, vout)
		for i, s := range seqs {
			kk, vvv := k[s.Row*kvs:(s.Row+s.T)*kvs], v[s.Row*kvs:(s.Row+s.T)*kvs]
			if s.Pos > 0 {
				c := cs[i-len(own)]
				kk, vvv = append(append([]float32(nil), c.pk...), kk...), append(append([]float32(nil), c.pv...), vvv...)
			}
			out, pr, osc := seqAttnRef(q[s.Row*qs:(s.Row+s.T)*qs], kk, vvv, s.T, s.Pos, h, kvmap)
			cmp(t, "attention out", got[s.Row*qs:(s.Row+s.T)*qs], out, osc)
			ones := make([]float64, len(pr))
			for j := range ones {
				ones[j] = 1
			}
			cmp(t, "attention probs", get(t, x, probs[i]), pr, ones)
		}

		// Backward over the own-key sequences, from saved and from
		// recomputed probabilities.
		do := randVec(r, rows*qs)
		vdo := padded(t, x, do)
		for _, saved := range []bool{true, false} {
			bs := append([]backend.AttnSeq(nil), seqs[:len(own)]...)
			if !saved {
				for i := range bs {
					bs[i].Probs = backend.View{}
				}
			}
			vdq, _ := x.Alloc(rows * qs)
			vdk, _ := x.Alloc(rows * kvs)
			vdv, _ := x.Alloc(rows * kvs)
			x.AttentionBackward(vdq, vdk, vdv, vdo, vq, vk, vv, bs, h)
			gdq, gdk, gdv := get(t, x, vdq), get(t, x, vdk), get(t, x, vdv)
			for _, s := range bs {
				q0, k0 := s.Row*qs, s.Row*kvs
				dq, dk, dv, sq, sk, sv := attnBackwardRef(do[q0:q0+s.T*qs], q[q0:q0+s.T*qs], k[k0:k0+s.T*kvs], v[k0:k0+s.T*kvs], s.T, h, kvmap)
				cmp(t, "attention dq", gdq[q0:q0+s.T*qs], dq, sq)
				cmp(t, "attention dk", gdk[k0:k0+s.T*kvs], dk, sk)
				cmp(t, "attention dv", gdv[k0:k0+s.T*kvs], dv, sv)
			}
		}
	}
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
}

// attnBackwardRef is the float64 backward of one sequence at position 0,
// with the magnitudes of the terms of each element (sq, sk, sv).
func attnBackwardRef(do, q, k, v []float32, T int, h backend.Heads, kvmap []int) (dq, dk, dv, sq, sk, sv []float64) {
	_, p, _ := seqAttnRef(q, k, v, T, 0, h, kvmap)
	dq, dk, dv = make([]float64, T*h.NH*h.D), make([]float64, T*h.NKV*h.D), make([]float64, T*h.NKV*h.D)
	sq, sk, sv = make([]float64, T*h.NH*h.D), make([]float64, T*h.NKV*h.D), make([]float64, T*h.NKV*h.D)
	sc := 1 / math.Sqrt(float64(h.D))
	for hh := 0; hh < h.NH; hh++ {
		kh := kvmap[hh]
		for t := 0; t < T; t++ {
			pr := p[(hh*T+t)*T : (hh*T+t)*T+T]
			dp, adp := make([]float64, t+1), make([]float64, t+1)
			var sum, asum float64
			for j := 0; j <= t; j++ {
				for d := 0; d < h.D; d++ {
					a, b := float64(do[(t*h.NH+hh)*h.D+d]), float64(v[(j*h.NKV+kh)*h.D+d])
					dp[j] += a * b
					adp[j] += math.Abs(a * b)
				}
				sum += pr[j] * dp[j]
				asum += pr[j] * adp[j]
			}
			for j := 0; j <= t; j++ {
				ds := pr[j] * (dp[j] - sum) * sc
				ads := pr[j] * (adp[j] + asum) * sc
				for d := 0; d < h.D; d++ {
					kk, qq, oo := float64(k[(j*h.NKV+kh)*h.D+d]), float64(q[(t*h.NH+hh)*h.D+d]), float64(do[(t*h.NH+hh)*h.D+d])
					dq[(t*h.NH+hh)*h.D+d] += ds * kk
					sq[(t*h.NH+hh)*h.D+d] += ads * math.Abs(kk)
					dk[(j*h.NKV+kh)*h.D+d] += ds * qq
					sk[(j*h.NKV+kh)*h.D+d] += ads * math.Abs(qq)
					dv[(j*h.NKV+kh)*h.D+d] += pr[j] * oo
					sv[(j*h.NKV+kh)*h.D+d] += pr[j] * math.Abs(oo)
				}
			}
		}
	}
	return
}

func TestDevEmbed(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(7, 7))
	const vocab, dim = 50, 24
	tab := randVec(r, vocab*dim)
	ids := []int{3, 0, 49, 3, 17, 3}
	vt := padded(t, x, tab)
	vo, _ := x.Alloc(len(ids) * dim)
	x.Embed(vo, vt, ids, dim)
	got := get(t, x, vo)
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			if got[i*dim+j] != tab[id*dim+j] {
				t.Fatalf("embed row %d", i)
			}
		}
	}
	dx := randVec(r, len(ids)*dim)
	d0 := randVec(r, vocab*dim)
	vd := padded(t, x, d0)
	x.EmbedBackward(vd, padded(t, x, dx), ids, dim)
	ref, sc := f64(d0), make([]float64, len(d0))
	for i := range sc {
		sc[i] = math.Abs(ref[i])
	}
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			ref[id*dim+j] += float64(dx[i*dim+j])
			sc[id*dim+j] += math.Abs(float64(dx[i*dim+j]))
		}
	}
	cmp(t, "embed backward", get(t, x, vd), ref, sc)
	x.Embed(vo, vt, []int{1, vocab}, dim)
	if err := x.Sync(); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("bad id: %v", err)
	}
}

func softmax64(z []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	p := make([]float64, len(z))
	for i, v := range z {
		p[i] = math.Exp(float64(v) - mx)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

func TestDevLosses(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(8, 8))
	const rows, vocab, k = 7, 301, 9
	z, tz := randVec(r, rows*vocab), randVec(r, rows*vocab)
	for i := range z {
		z[i] *= 3
		tz[i] *= 3
	}
	targets := []int{5, -1, 300, 0, -1, 17, 17}
	n := 5
	const w = 0.7
	vz, vt := padded(t, x, z), padded(t, x, tz)

	// Cross-entropy: overwrites dlogits.
	dl := put(t, x, randVec(r, rows*vocab))
	ce, err := x.CrossEntropy(dl, vz, targets, vocab, w)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	ref := make([]float64, rows*vocab)
	for i, tg := range targets {
		if tg < 0 {
			continue
		}
		p := softmax64(z[i*vocab : (i+1)*vocab])
		want -= math.Log(p[tg])
		for j := range p {
			ref[i*vocab+j] = w / float64(n) * (p[j] - b2f(j == tg))
		}
	}
	want /= float64(n)
	if math.Abs(ce-want) > devTol*want {
		t.Errorf("cross-entropy %v, want %v", ce, want)
	}
	cmp(t, "cross-entropy gradient", get(t, x, dl), ref, nil)
	if l, err := x.CrossEntropy(backend.View{}, vz, targets, vocab, w); err != nil || math.Abs(l-ce) > 1e-12 {
		t.Errorf("loss only: %v %v", l, err)
	}

	// KL over the full vocabulary: adds into dlogits.
	d0 := randVec(r, rows*vocab)
	dl = put(t, x, d0)
	kl, err := x.KL(dl, vz, vt, targets, vocab, w)
	if err != nil {
		t.Fatal(err)
	}
	want = 0
	ref, sc := f64(d0), make([]float64, rows*vocab)
	for i := range sc {
		sc[i] = math.Abs(ref[i])
	}
	for i, tg := range targets {
		if tg < 0 {
			continue
		}
		q, p := softmax64(z[i*vocab:(i+1)*vocab]), softmax64(tz[i*vocab:(i+1)*vocab])
		for j := range p {
			want += p[j] * (math.Log(p[j]) - math.Log(q[j]))
			g := w / float64(n) * (q[j] - p[j])
			ref[i*vocab+j] += g
			sc[i*vocab+j] += math.Abs(w/float64(n)*q[j]) + math.Abs(w/float64(n)*p[j])
		}
	}
	want /= float64(n)
	if math.Abs(kl-want) > devTol*want {
		t.Errorf("KL %v, want %v", kl, want)
	}
	cmp(t, "KL gradient", get(t, x, dl), ref, sc)

	// Sparse KL over the teacher's top k (largest first).
	idx, val := make([]int32, rows*k), make([]float32, rows*k)
	for i := 0; i < rows; i++ {
		perm := r.Perm(vocab)[:k]
		for j, c := range perm {
			idx[i*k+j], val[i*k+j] = int32(c), tz[i*vocab+c]
		}
	}
	d0 = randVec(r, rows*vocab)
	dl = put(t, x, d0)
	skl, err := x.SparseKL(dl, vz, idx, val, k, targets, vocab, w)
	if err != nil {
		t.Fatal(err)
	}
	want = 0
	ref = f64(d0)
	for i := range sc {
		sc[i] = math.Abs(ref[i])
	}
	for i, tg := range targets {
		if tg < 0 {
			continue
		}
		a, b := val[i*k:(i+1)*k], make([]float32, k)
		for j := range b {
			b[j] = z[i*vocab+int(idx[i*k+j])]
		}
		p, q := softmax64(a), softmax64(b)
		for j := range p {
			want += p[j] * (math.Log(p[j]) - math.Log(q[j]))
			c := i*vocab + int(idx[i*k+j])
			ref[c] += w / float64(n) * (q[j] - p[j])
			sc[c] += w / float64(n) * (q[j] + p[j])
		}
	}
	want /= float64(n)
	if math.Abs(skl-want) > devTol*want {
		t.Errorf("sparse KL %v, want %v", skl, want)
	}
	cmp(t, "sparse KL gradient", get(t, x, dl), ref, sc)

	// No target at all: 0, and cross-entropy zeroes dlogits.
	dl = put(t, x, randVec(r, vocab))
	if l, err := x.CrossEntropy(dl, vz.Slice(0, vocab), []int{-1}, vocab, 1); err != nil || l != 0 {
		t.Errorf("no targets: %v %v", l, err)
	}
	for _, v := range get(t, x, dl) {
		if v != 0 {
			t.Fatal("no targets: dlogits not zeroed")
		}
	}
	if _, err := x.CrossEntropy(dl, vz, []int{vocab}, vocab, 1); err == nil {
		t.Error("target outside the vocabulary: no error")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestDevAdamW(t *testing.T) {
	x := openDev(t)
	r := rand.New(rand.NewPCG(9, 9))
	const n = 1000
	w0, g, m0, v0 := randVec(r, n), randVec(r, n), randVec(r, n), randVec(r, n)
	for i := range v0 {
		v0[i] = v0[i] * v0[i]
	}
	lr, wd, b1, b2, eps, step := 1e-3, 0.1, 0.9, 0.95, 1e-8, 3
	s := backend.AdamWStep{Decay: float32(1 - lr*wd), B1: float32(b1), C1: float32(1 - b1), B2: float32(b2), C2: float32(1 - b2),
		BC2s: float32(math.Sqrt(1 - math.Pow(b2, float64(step)))), Eps: float32(eps), NegLR1: float32(-lr / (1 - math.Pow(b1, float64(step))))}
	vw, vg, vm, vv := padded(t, x, w0), padded(t, x, g), padded(t, x, m0), padded(t, x, v0)
	x.AdamW(vw, vg, vm, vv, s)
	rw, rm, rv := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range rw {
		gi := float64(g[i])
		rm[i] = float64(s.B1)*float64(m0[i]) + float64(s.C1)*gi
		rv[i] = float64(s.B2)*float64(v0[i]) + float64(s.C2)*gi*gi
		rw[i] = float64(w0[i])*float64(s.Decay) + float64(s.NegLR1)*rm[i]/(math.Sqrt(rv[i])/float64(s.BC2s)+float64(s.Eps))
	}
	cmp(t, "adamw m", get(t, x, vm), rm, nil)
	cmp(t, "adamw v", get(t, x, vv), rv, nil)
	cmp(t, "adamw w", get(t, x, vw), rw, nil)
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
	g[17] = float32(math.Inf(1))
	x.AdamW(vw, padded(t, x, g), vm, vv, s)
	if err := x.Sync(); !errors.Is(err, backend.ErrNonFinite) {
		t.Errorf("infinite gradient: Sync = %v", err)
	}
	if err := x.Sync(); err != nil {
		t.Errorf("second Sync: %v", err)
	}
	// The flag is a pending error like the host device's: the next loss
	// or Download returns it too (once), and later operations still run.
	x.AdamW(vw, padded(t, x, g), vm, vv, s)
	z := put(t, x, []float32{1, 2, 3})
	if _, err := x.CrossEntropy(backend.View{}, z, []int{0}, 3, 1); !errors.Is(err, backend.ErrNonFinite) {
		t.Errorf("loss after an infinite gradient: %v", err)
	}
	if l, err := x.CrossEntropy(backend.View{}, z, []int{0}, 3, 1); err != nil || l <= 0 {
		t.Errorf("the next loss: %v %v", l, err)
	}
	x.AdamW(vw, padded(t, x, g), vm, vv, s)
	x.Add(z, z)
	if err := x.Download(make([]float32, 3), z); !errors.Is(err, backend.ErrNonFinite) {
		t.Errorf("Download after an infinite gradient: %v", err)
	}
	if got := get(t, x, z); got[0] != 2 {
		t.Errorf("an operation after the non-finite step did not run: %v", got)
	}
}

func TestDevStickyErrors(t *testing.T) {
	x := openDev(t)
	a := put(t, x, []float32{1, 2, 3})
	b := put(t, x, []float32{10, 20, 30})
	x.Add(a, backend.View{Buf: b.Buf, Off: 2, N: 3}) // outside its buffer
	x.Add(a, b)                                      // skipped
	err := x.Sync()
	if err == nil || !strings.Contains(err.Error(), "outside its buffer") {
		t.Fatalf("Sync = %v", err)
	}
	if err := x.Sync(); err != nil {
		t.Fatalf("error not cleared: %v", err)
	}
	if got := get(t, x, a); got[0] != 1 {
		t.Errorf("an operation after the error ran: %v", got)
	}
	x.MatNT(a, a, b, 2, 2, 2, false) // too short
	if err := x.Download(make([]float32, 3), a); err == nil {
		t.Error("Download: pending error not returned")
	}
	x.Attention(a, a, a, a, []backend.AttnSeq{{Seq: backend.Seq{T: 1}}}, backend.Heads{NH: 3, NKV: 2, D: 1})
	if _, err := x.CrossEntropy(backend.View{}, a, []int{0}, 3, 1); err == nil || !strings.Contains(err.Error(), "group evenly") {
		t.Errorf("loss: pending error not returned: %v", err)
	}
	// KL and SparseKL return a pending error too, even with bad operands
	// of their own.
	x.Zero(backend.View{Buf: a.Buf, Off: 2, N: 5})
	if _, err := x.KL(backend.View{}, a, backend.View{}, []int{0}, 3, 1); err == nil || !strings.Contains(err.Error(), "Zero") {
		t.Errorf("KL: pending error not returned: %v", err)
	}
	x.Zero(backend.View{Buf: a.Buf, Off: 2, N: 5})
	if _, err := x.SparseKL(backend.View{}, a, nil, nil, 1, []int{0}, 3, 1); err == nil || !strings.Contains(err.Error(), "Zero") {
		t.Errorf("SparseKL: pending error not returned: %v", err)
	}
	other := openDev(t)
	ob := put(t, other, []float32{1, 2, 3})
	x.Add(a, ob)
	if err := x.Sync(); err == nil || !strings.Contains(err.Error(), "another device") {
		t.Errorf("buffer of another device: %v", err)
	}
	x.Free(b)
	x.Add(a, b)
	if err := x.Sync(); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("freed buffer: %v", err)
	}
	x.Rope(a, panicRope{}, []backend.Seq{{T: 1}}, 1, false)
	if err := x.Sync(); err == nil || !strings.Contains(err.Error(), "table exploded") {
		t.Errorf("panicking rope table: %v", err)
	}
}

type panicRope struct{}

func (panicRope) HeadDimension() int               { return 2 }
func (panicRope) IsInterleaved() bool              { return false }
func (panicRope) Table(int) ([]float32, []float32) { panic("table exploded") }

func TestDevOutOfMemory(t *testing.T) {
	x := openDev(t)
	_, err := x.Alloc(1 << 40)
	if err == nil || !strings.Contains(err.Error(), "out of device memory") {
		t.Fatalf("huge Alloc: %v", err)
	}
	if _, err := x.Alloc(-1); err == nil {
		t.Error("negative Alloc: no error")
	}
}

// TestBackendFloat32Device: the host-slice backend hands out handles on
// its device; each has its own sticky error and non-finite flag, and they
// share buffers.
func TestBackendFloat32Device(t *testing.T) {
	d := open(t, Options{})
	be := &Backend{d: d}
	var _ interface {
		Float32Device() backend.Device[float32]
	} = be
	x, y := be.Float32Device(), be.Float32Device()
	if x.(*Dev).d != d || y.(*Dev).d != d {
		t.Fatal("Float32Device is not on the backend's device")
	}
	a := put(t, x.(*Dev), []float32{1, 2, 3})
	y.Add(a, a) // a buffer of the same device
	x.Add(a, backend.View{Buf: a.Buf, Off: 2, N: 3})
	if err := y.Sync(); err != nil {
		t.Errorf("y sees x's error: %v", err)
	}
	if err := x.Sync(); err == nil {
		t.Error("x lost its error")
	}
	if got := get(t, y.(*Dev), a); got[2] != 6 {
		t.Errorf("shared buffer: %v", got)
	}
	g := put(t, x.(*Dev), []float32{float32(math.NaN()), 0, 0})
	m, v := put(t, x.(*Dev), make([]float32, 3)), put(t, x.(*Dev), make([]float32, 3))
	s := backend.AdamWStep{Decay: 1, B1: 0.9, C1: 0.1, B2: 0.99, C2: 0.01, BC2s: 1, Eps: 1e-8, NegLR1: -1e-3}
	w2, g2 := put(t, x.(*Dev), []float32{1, 2, 3}), put(t, x.(*Dev), []float32{1, 2, 3})
	m2, v2 := put(t, x.(*Dev), make([]float32, 3)), put(t, x.(*Dev), make([]float32, 3))
	x.AdamW(a, g, m, v, s)
	y.AdamW(w2, g2, m2, v2, s)
	if err := y.Sync(); err != nil {
		t.Errorf("y sees x's non-finite gradient: %v", err)
	}
	if err := x.Sync(); !errors.Is(err, backend.ErrNonFinite) {
		t.Errorf("x: %v", err)
	}
	// Many handles: the flag buffer grows (1024 bytes hold 256 slots).
	var ds []*Dev
	for i := 0; i < 300; i++ {
		z := d.F32()
		z.AdamW(w2, g2, m2, v2, s)
		ds = append(ds, z)
	}
	last := ds[299]
	last.AdamW(a, g, m, v, s) // g is not finite
	if err := last.Sync(); !errors.Is(err, backend.ErrNonFinite) {
		t.Errorf("handle 300: %v", err)
	}
	for _, z := range ds[:299] {
		if err := z.Sync(); err != nil {
			t.Fatalf("another handle: %v", err)
		}
	}
}

// TestBackendFallback: a device failure in a host-slice product is recorded
// (Err) and the product computed on the CPU; nothing panics.
func TestBackendFallback(t *testing.T) {
	d := open(t, Options{})
	be := &Backend{d: d}
	defer func() {
		for _, s := range be.sc {
			s.Free()
		}
	}()
	d.heapSize = 1 << 10 // every scratch allocation now fails
	r := rand.New(rand.NewPCG(10, 10))
	const m, n, k = 9, 40, 30
	a, b := randVec(r, m*k), randVec(r, n*k)
	c := make([]float32, m*n)
	be.MatMulNT(c, a, b, m, n, k, false)
	ref, scale := gemmRef(false, true, nil, a, b, m, n, k, false)
	cmp(t, "fallback MatMulNT", c, ref, scale)
	err := be.Err()
	if err == nil || !strings.Contains(err.Error(), "out of device memory") {
		t.Errorf("Err = %v", err)
	}
	if be.Err() != nil {
		t.Error("Err not cleared")
	}
}

// TestDevAttentionCompact: without Probs the forward uses compact
// probability rows in chunks that reuse one region (forced small here:
// 64 floats, a few rows per chunk); the output is bitwise the one with Probs.
func TestDevAttentionCompact(t *testing.T) {
	x := openDev(t)
	small := open(t, Options{}).F32()
	small.d.attnCap = 64
	r := rand.New(rand.NewPCG(12, 12))
	h := backend.Heads{NH: 4, NKV: 2, D: 8}
	qs, kvs := h.NH*h.D, h.NKV*h.D
	const rows = 17
	q, k, v := randVec(r, rows*qs), randVec(r, rows*kvs), randVec(r, rows*kvs)
	past := randVec(r, 9*kvs)
	var outs [][]float32
	for i, dev := range []*Dev{x, small, x} {
		vq, vk, vv := put(t, dev, q), put(t, dev, k), put(t, dev, v)
		vp := put(t, dev, past)
		out, _ := dev.Alloc(rows * qs)
		seqs := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 7}}, {Seq: backend.Seq{Row: 7, T: 5}},
			{Seq: backend.Seq{Row: 12, T: 5, Pos: 9}, K: []backend.View{vp, vk.Rows(12, 17, kvs)}, V: []backend.View{vp, vv.Rows(12, 17, kvs)}}}
		if i == 0 { // with probabilities
			for j := range seqs {
				seqs[j].Probs, _ = dev.Alloc(h.NH * seqs[j].T * (seqs[j].Pos + seqs[j].T))
			}
		}
		n0 := dev.d.Dispatches()
		dev.Attention(out, vq, vk, vv, seqs, h)
		outs = append(outs, get(t, dev, out))
		if n := dev.d.Dispatches() - n0; i == 1 && n < 8 {
			t.Errorf("small chunks: %d dispatches and copies", n)
		}
	}
	for i := 1; i < len(outs); i++ {
		for j := range outs[0] {
			if outs[i][j] != outs[0][j] {
				t.Fatalf("run %d: out[%d] = %v, with probabilities %v", i, j, outs[i][j], outs[0][j])
			}
		}
	}
}

// TestDevAttentionBackwardGroups: sequences whose probabilities exceed the
// scratch cap run in groups reusing one region; the gradients are bitwise
// those of one group, from saved and from recomputed probabilities.
func TestDevAttentionBackwardGroups(t *testing.T) {
	x := openDev(t)
	small := open(t, Options{}).F32()
	small.d.attnCap = 64 // every sequence its own group
	r := rand.New(rand.NewPCG(13, 13))
	h := backend.Heads{NH: 3, NKV: 1, D: 4}
	qs, kvs := h.NH*h.D, h.NKV*h.D
	const rows = 15
	q, k, v, do := randVec(r, rows*qs), randVec(r, rows*kvs), randVec(r, rows*kvs), randVec(r, rows*qs)
	for _, saved := range []bool{true, false} {
		var res [2][3][]float32
		for i, dev := range []*Dev{x, small} {
			vq, vk, vv, vdo := put(t, dev, q), put(t, dev, k), put(t, dev, v), put(t, dev, do)
			seqs := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 6}}, {Seq: backend.Seq{Row: 6, T: 2}}, {Seq: backend.Seq{Row: 8, T: 7}}}
			if saved {
				out, _ := dev.Alloc(rows * qs)
				for j := range seqs {
					seqs[j].Probs, _ = dev.Alloc(h.NH * seqs[j].T * seqs[j].T)
				}
				dev.Attention(out, vq, vk, vv, seqs, h)
			}
			dq, _ := dev.Alloc(rows * qs)
			dk, _ := dev.Alloc(rows * kvs)
			dv, _ := dev.Alloc(rows * kvs)
			n0 := dev.d.Dispatches()
			dev.AttentionBackward(dq, dk, dv, vdo, vq, vk, vv, seqs, h)
			res[i] = [3][]float32{get(t, dev, dq), get(t, dev, dk), get(t, dev, dv)}
			if n := dev.d.Dispatches() - n0; i == 1 && n < 12 {
				t.Errorf("groups: %d dispatches and copies", n)
			}
		}
		for g := range res[0] {
			for j := range res[0][g] {
				if res[0][g][j] != res[1][g][j] {
					t.Fatalf("saved=%v gradient %d element %d: %v in groups, %v in one", saved, g, j, res[1][g][j], res[0][g][j])
				}
			}
		}
	}
}

// TestDevConcurrent: goroutines on their own handles of one device (as a
// search's workers) get their own results and errors.
func TestDevConcurrent(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(14, 14))
	const m, n, k = 13, 17, 19
	a, b := randVec(r, m*k), randVec(r, n*k)
	ref, scale := gemmRef(false, true, nil, a, b, m, n, k, false)
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			x := d.F32()
			var err error
			defer func() { errs <- err }()
			for it := 0; it < 10; it++ {
				va, _ := x.Resident(a)
				vb, _ := x.Resident(b)
				vc, _ := x.Alloc(m * n)
				x.MatNT(vc, va, vb, m, n, k, false)
				if g == 0 {
					x.Add(vc, va) // an error of handle 0 only
					if e := x.Sync(); e == nil {
						err = errors.New("handle 0: no error")
						return
					}
					x.MatNT(vc, va, vb, m, n, k, false)
				}
				got := make([]float32, m*n)
				if err = x.Download(got, vc); err != nil {
					return
				}
				for i := range got {
					if math.Abs(float64(got[i])-ref[i]) > devTol*scale[i] {
						err = fmt.Errorf("handle %d: element %d %v, want %v", g, i, got[i], ref[i])
						return
					}
				}
				x.Free(va)
				x.Free(vb)
				x.Free(vc)
			}
			err = x.Sync()
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
