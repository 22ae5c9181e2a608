package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
)

// The GEMM formulation must agree with the direct causal loop (an independent
// formulation of the same attention) on every backend, including with a KV
// cache (past > 0) and grouped heads.
func TestAttentionGEMMMatchesLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range backend.Names() {
		be, err := backend.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			T, past, nH, nKV, d int
			kvMap               []int
		}{
			{1, 0, 1, 1, 4, nil}, {7, 0, 4, 4, 8, nil}, {13, 0, 8, 2, 16, nil}, {5, 9, 6, 3, 4, nil}, {33, 0, 2, 1, 64, nil}, {1, 20, 4, 2, 8, nil},
			// Ragged groups (pruned GQA), an unsorted map and an unread K/V head.
			{9, 0, 5, 4, 8, []int{0, 0, 1, 2, 3}}, {6, 4, 5, 3, 4, []int{2, 0, 2, 1, 2}}, {3, 0, 2, 3, 4, []int{2, 0}},
		} {
			t.Run(fmt.Sprintf("%s/%+v", name, c), func(t *testing.T) {
				Tk := c.past + c.T
				rnd := func(n int) []float32 {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(r.NormFloat64())
					}
					return x
				}
				q, k, v := rnd(c.T*c.nH*c.d), rnd(Tk*c.nKV*c.d), rnd(Tk*c.nKV*c.d)
				want := make([]float32, c.T*c.nH*c.d)
				got := make([]float32, len(want))
				pw := make([]float32, c.nH*c.T*Tk)
				pg := make([]float32, len(pw))
				AttentionForward(want, pw, q, k, v, c.T, c.past, c.nH, c.nKV, c.kvMap, c.d)
				AttentionForwardGEMM(be, got, pg, q, k, v, c.T, c.past, c.nH, c.nKV, c.kvMap, c.d)
				for i := range want {
					if math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("out[%d]: gemm %g loop %g", i, got[i], want[i])
					}
				}
				for i := range pw {
					if math.Abs(float64(pg[i]-pw[i])) > 1e-6 {
						t.Fatalf("probs[%d]: gemm %g loop %g", i, pg[i], pw[i])
					}
				}
			})
		}
	}
}

// The GEMM backward must agree with the direct loop backward (checked against
// float64 finite differences in ops_backward_test.go), and recomputing the
// probabilities must give bitwise the gradients of saved ones.
func TestAttentionBackwardGEMMMatchesLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range backend.Names() {
		be, _ := backend.Get(name)
		for _, c := range []struct {
			T, nH, nKV, d int
			kvMap         []int
		}{{1, 1, 1, 4, nil}, {9, 4, 4, 8, nil}, {17, 8, 2, 16, nil}, {6, 6, 3, 4, nil}, {31, 2, 1, 64, nil},
			{8, 5, 4, 8, []int{0, 0, 1, 2, 3}}, {7, 4, 3, 4, []int{2, 0, 2, 1}}, {5, 2, 3, 4, []int{2, 0}}} {
			t.Run(fmt.Sprintf("%s/%+v", name, c), func(t *testing.T) {
				rnd := func(n int) []float32 {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(r.NormFloat64())
					}
					return x
				}
				qn, kn := c.T*c.nH*c.d, c.T*c.nKV*c.d
				q, k, v, dout := rnd(qn), rnd(kn), rnd(kn), rnd(qn)
				grads := func(be backend.Backend, save bool) (dq, dk, dv []float32) {
					var probs []float32
					if save {
						probs = make([]float32, c.nH*c.T*c.T)
						AttentionForwardT(be, make([]float32, qn), probs, q, k, v, c.T, 0, c.nH, c.nKV, c.kvMap, c.d)
					}
					dq, dk, dv = make([]float32, qn), make([]float32, kn), make([]float32, kn)
					AttentionBackward(be, dq, dk, dv, dout, q, k, v, probs, c.T, c.nH, c.nKV, c.kvMap, c.d)
					return
				}
				wq, wk, wv := grads(nil, false)
				gq, gk, gv := grads(be, false)
				sq, sk, sv := grads(be, true)
				for _, p := range []struct {
					n            string
					want, got, s []float32
				}{{"dq", wq, gq, sq}, {"dk", wk, gk, sk}, {"dv", wv, gv, sv}} {
					for i := range p.want {
						if math.Abs(float64(p.got[i]-p.want[i])) > 1e-4*(1+math.Abs(float64(p.want[i]))) {
							t.Fatalf("%s[%d]: gemm %g loop %g", p.n, i, p.got[i], p.want[i])
						}
						if math.Float32bits(p.got[i]) != math.Float32bits(p.s[i]) {
							t.Fatalf("%s[%d]: recomputed %g saved %g differ", p.n, i, p.got[i], p.s[i])
						}
					}
				}
			})
		}
	}
}

// A ragged K/V map must compute exactly multi-head attention over K/V heads
// copied per query head (an independent statement of what the map means),
// for the loop and the GEMM path, with a cache (past > 0) too.
func TestAttentionKVMapEqualsExpandedMHA(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	T, past, d := 6, 3, 8
	Tk := T + past
	kvMap := []int{0, 1, 1, 1, 3} // 5 query heads over 4 K/V heads; head 2 unread
	nH, nKV := len(kvMap), 4
	rnd := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	q, k, v := rnd(T*nH*d), rnd(Tk*nKV*d), rnd(Tk*nKV*d)
	ke, ve := make([]float32, Tk*nH*d), make([]float32, Tk*nH*d)
	for j := 0; j < Tk; j++ {
		for h, g := range kvMap {
			copy(ke[(j*nH+h)*d:(j*nH+h+1)*d], k[(j*nKV+g)*d:(j*nKV+g+1)*d])
			copy(ve[(j*nH+h)*d:(j*nH+h+1)*d], v[(j*nKV+g)*d:(j*nKV+g+1)*d])
		}
	}
	want := make([]float32, T*nH*d)
	AttentionForward(want, nil, q, ke, ve, T, past, nH, nH, nil, d)
	for _, gemm := range []bool{false, true} {
		got := make([]float32, len(want))
		if gemm {
			AttentionForwardGEMM(be, got, nil, q, k, v, T, past, nH, nKV, kvMap, d)
		} else {
			AttentionForward(got, nil, q, k, v, T, past, nH, nKV, kvMap, d)
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("gemm=%v out[%d]: mapped %g expanded %g", gemm, i, got[i], want[i])
			}
		}
	}
	// Gradients (the backward pass has no past: all Tk positions are
	// queries): dK/dV of the map are the sums over the copies.
	T = Tk
	q = rnd(T * nH * d)
	dout := rnd(T * nH * d)
	dqe, dke, dve := make([]float32, T*nH*d), make([]float32, T*nH*d), make([]float32, T*nH*d)
	AttentionBackward[float32](nil, dqe, dke, dve, dout, q, ke, ve, nil, T, nH, nH, nil, d)
	for _, b := range []backend.Backend{nil, be} {
		dq, dk, dv := make([]float32, T*nH*d), make([]float32, T*nKV*d), make([]float32, T*nKV*d)
		AttentionBackward(b, dq, dk, dv, dout, q, k, v, nil, T, nH, nKV, kvMap, d)
		for i := range dq {
			if math.Abs(float64(dq[i]-dqe[i])) > 1e-4*(1+math.Abs(float64(dqe[i]))) {
				t.Fatalf("backend %v dq[%d]: mapped %g expanded %g", b != nil, i, dq[i], dqe[i])
			}
		}
		for j := 0; j < T; j++ {
			for g := 0; g < nKV; g++ {
				for i := 0; i < d; i++ {
					var sk, sv float64
					for h, hg := range kvMap {
						if hg == g {
							sk += float64(dke[(j*nH+h)*d+i])
							sv += float64(dve[(j*nH+h)*d+i])
						}
					}
					gk, gv := float64(dk[(j*nKV+g)*d+i]), float64(dv[(j*nKV+g)*d+i])
					if math.Abs(gk-sk) > 1e-4*(1+math.Abs(sk)) || math.Abs(gv-sv) > 1e-4*(1+math.Abs(sv)) {
						t.Fatalf("backend %v pos %d kv head %d: dk %g want %g, dv %g want %g", b != nil, j, g, gk, sk, gv, sv)
					}
				}
			}
		}
	}
}

// dsRowsLoop is the plain dS row loop dsRows must reproduce bit for bit.
func dsRowsLoop(p, ds []float32, rows, T int, scale float32) {
	for r := 0; r < rows; r++ {
		pr, dr := p[r*T:(r+1)*T], ds[r*T:(r+1)*T]
		var sum float64
		for j, pj := range pr {
			sum += float64(pj) * float64(dr[j])
		}
		fs := float32(sum)
		for j, pj := range pr {
			dr[j] = pj * (dr[j] - fs) * scale
		}
	}
}

// TestDSRowsBitwise: the blocked dS rows (masked columns left out of the
// sum) against the plain loop, with causal rows of stacked heads, odd row
// counts and specials in the masked part (NaN, ±Inf, a non-zero P, −0).
func TestDSRowsBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, c := range []struct{ T, heads int }{{1, 1}, {3, 2}, {5, 3}, {17, 2}, {128, 2}, {33, 1}} {
		for trial := 0; trial < 6; trial++ {
			rows := c.heads * c.T
			p, ds := make([]float32, rows*c.T), make([]float32, rows*c.T)
			for i := 0; i < rows; i++ {
				tt := i % c.T
				for j := 0; j < c.T; j++ {
					ds[i*c.T+j] = float32(r.NormFloat64())
					if j <= tt {
						p[i*c.T+j] = float32(r.Float64()) / float32(tt+1)
					}
				}
			}
			if trial > 0 && rows > 1 {
				// One special per trial, in a masked column (or P itself).
				i := r.IntN(rows - 1)
				tt := i % c.T
				if tt+1 < c.T {
					j := i*c.T + tt + 1 + r.IntN(c.T-tt-1)
					switch trial {
					case 1:
						ds[j] = nan
					case 2:
						ds[j] = -inf
					case 3:
						p[j] = 1e-30
					case 4:
						p[j] = float32(math.Copysign(0, -1))
					case 5:
						ds[j] = inf
						ds[i*c.T] = 0 // and an exact zero product
					}
				}
			}
			want := append([]float32(nil), ds...)
			dsRowsLoop(p, want, rows, c.T, 0.25)
			for _, dk := range dsImpls() {
				for _, split := range []int{1, 3, rows} { // block boundaries anywhere
					got := append([]float32(nil), ds...)
					for r0 := 0; r0 < rows; r0 += split {
						dsRows(dk, p, got, r0, min(r0+split, rows), c.T, 0.25)
					}
					for k := range got {
						if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
							t.Fatalf("%T T=%d heads=%d trial %d split %d: [%d] = %v (%#x), loop %v (%#x)", dk, c.T, c.heads, trial, split, k, got[k], math.Float32bits(got[k]), want[k], math.Float32bits(want[k]))
						}
					}
				}
			}
		}
	}
}

// TestCopyRows: the head gather/scatter against a plain element loop, for
// the unrolled head dims and others, with strides on both sides and nothing
// written outside the rows.
func TestCopyRows(t *testing.T) {
	for _, d := range []int{1, 3, 8, 16, 17} {
		for _, c := range []struct{ n, ds, ss int }{{0, d, d}, {1, d, d}, {5, d, 3 * d}, {7, 2*d + 1, d}, {4, 4 * d, 5*d + 2}} {
			src := make([]float32, (c.n-1)*c.ss+d+2)
			for i := range src {
				src[i] = float32(i) + 0.5
			}
			got, want := make([]float32, (c.n-1)*c.ds+d+3), make([]float32, (c.n-1)*c.ds+d+3)
			for i := range got {
				got[i], want[i] = -1, -1
			}
			for j := 0; j < c.n; j++ {
				for i := 0; i < d; i++ {
					want[j*c.ds+i] = src[j*c.ss+i]
				}
			}
			copyRows(got, 0, c.ds, src, 0, c.ss, c.n, d)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("d=%d %+v: [%d] = %v, want %v", d, c, i, got[i], want[i])
				}
			}
		}
	}
}

// dsImpls are dsRows' row kernels under test: none (the Go loops) and
// every backend that has them.
func dsImpls() []dsKernels {
	out := []dsKernels{nil}
	for _, name := range backend.Names() {
		be, _ := backend.Get(name)
		if dk, ok := be.(dsKernels); ok {
			out = append(out, dk)
		}
	}
	return out
}
