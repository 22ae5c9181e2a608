package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

type shape int

const (
	nt shape = iota
	nn
	tn
)

func (s shape) String() string { return [...]string{"NT", "NN", "TN"}[s] }

// elem returns A(i,p) and B(p,j) for the shape's storage.
func operands(s shape, a, b []float32, m, n, k int) (func(i, p int) float64, func(p, j int) float64) {
	A := func(i, p int) float64 { return float64(a[i*k+p]) }
	if s == tn {
		A = func(i, p int) float64 { return float64(a[p*m+i]) }
	}
	B := func(p, j int) float64 { return float64(b[p*n+j]) }
	if s == nt {
		B = func(p, j int) float64 { return float64(b[j*k+p]) }
	}
	return A, B
}

// checkGemm compares got with the float64 product. Any summation order of
// k products plus the initial C, in float32 with or without FMA, is within
// γ_{k+1}·(|C0| + Σ|a||b|) with γ_n ≈ n·2⁻²⁴ (Higham, §3.1); we allow 2×.
func checkGemm(t *testing.T, name string, got, c0 []float32, A func(i, p int) float64, B func(p, j int) float64, m, n, k int) {
	t.Helper()
	const u = 1.0 / (1 << 24)
	// Materialize A and Bᵀ in float64 once so the reference loop is direct.
	af := make([]float64, m*k)
	bt := make([]float64, n*k)
	for p := 0; p < k; p++ {
		for i := 0; i < m; i++ {
			af[i*k+p] = A(i, p)
		}
		for j := 0; j < n; j++ {
			bt[j*k+p] = B(p, j)
		}
	}
	bad := 0
	for i := 0; i < m; i++ {
		ar := af[i*k : i*k+k]
		for j := 0; j < n; j++ {
			br := bt[j*k : j*k+k]
			var s, sa float64
			if c0 != nil {
				s = c0f(c0, i*n+j)
				sa = math.Abs(s)
			}
			for p, x := range ar {
				x *= br[p]
				s += x
				sa += math.Abs(x)
			}
			tol := 2*float64(k+2)*u*sa + 1e-30
			if d := math.Abs(float64(got[i*n+j]) - s); !(d <= tol) {
				if bad < 5 {
					t.Errorf("%s: C[%d,%d] = %g, want %g (err %.3g > tol %.3g)", name, i, j, got[i*n+j], s, d, tol)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d bad elements", name, bad)
	}
}

func c0f(c0 []float32, i int) float64 { return float64(c0[i]) }

func variants(t testing.TB) []*CPU {
	var out []*CPU
	for _, v := range Available() {
		c, err := NewVariant(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func runShape(c *CPU, s shape, cc, a, b []float32, m, n, k int, acc bool) {
	switch s {
	case nt:
		c.MatMulNT(cc, a, b, m, n, k, acc)
	case nn:
		c.MatMulNN(cc, a, b, m, n, k, acc)
	case tn:
		c.MatMulTN(cc, a, b, m, n, k, acc)
	}
}

func testCase(t *testing.T, c *CPU, s shape, m, n, k int, acc bool, r *rand.Rand) {
	a, b := randVec(r, m*k), randVec(r, k*n)
	cc := randVec(r, m*n)
	var c0 []float32
	if acc {
		c0 = append([]float32(nil), cc...)
	}
	runShape(c, s, cc, a, b, m, n, k, acc)
	A, B := operands(s, a, b, m, n, k)
	checkGemm(t, fmt.Sprintf("%s %v %dx%dx%d acc=%v", c.Name(), s, m, n, k, acc), cc, c0, A, B, m, n, k)
}

func TestGemmSmall(t *testing.T) {
	sizes := []int{1, 2, 7, 17, 63, 129}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range variants(t) {
		for _, s := range []shape{nt, nn, tn} {
			for _, m := range sizes {
				for _, n := range sizes {
					for _, k := range sizes {
						for _, acc := range []bool{false, true} {
							testCase(t, c, s, m, n, k, acc, r)
						}
					}
				}
			}
		}
	}
}

// Sizes that cross every block boundary (mc, kc, nc) and the parallel split.
func TestGemmLarge(t *testing.T) {
	dims := [][3]int{{300, 257, 513}, {145, 600, 260}, {1, 1100, 700}, {4, 900, 600}, {5, 2000, 40}, {2000, 3, 300}}
	if testing.Short() {
		dims = dims[:1]
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range variants(t) {
		for _, s := range []shape{nt, nn, tn} {
			for di, d := range dims {
				if c.Variant() == "purego" && di > 0 && !testing.Short() && s != nt {
					continue // slow; the SIMD variants share the driver
				}
				for _, acc := range []bool{false, true} {
					testCase(t, c, s, d[0], d[1], d[2], acc, r)
				}
			}
		}
	}
}

func TestGemmZeroK(t *testing.T) {
	for _, c := range variants(t) {
		cc := []float32{1, 2, 3, 4}
		c.MatMulNT(cc, nil, nil, 2, 2, 0, true)
		if cc[3] != 4 {
			t.Fatal("acc with k=0 changed C")
		}
		c.MatMulNN(cc, nil, nil, 2, 2, 0, false)
		for _, v := range cc {
			if v != 0 {
				t.Fatal("k=0 did not clear C")
			}
		}
	}
}

func symRand(r *rand.Rand, n int) []float32 {
	h := make([]float32, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			v := float32(r.NormFloat64())
			h[i*n+j], h[j*n+i] = v, v
		}
	}
	return h
}

func TestSyrk(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range variants(t) {
		for _, d := range [][2]int{{1, 1}, {7, 3}, {17, 129}, {63, 2}, {129, 63}, {300, 513}, {600, 40}} {
			n, k := d[0], d[1]
			x := randVec(r, k*n)
			h := symRand(r, n)
			h0 := append([]float32(nil), h...)
			c.SyrkTN(h, x, n, k)
			A := func(i, p int) float64 { return float64(x[p*n+i]) }
			B := func(p, j int) float64 { return float64(x[p*n+j]) }
			checkGemm(t, fmt.Sprintf("%s syrk %dx%d", c.Name(), n, k), h, h0, A, B, n, n, k)
			for i := 0; i < n; i++ {
				for j := 0; j < i; j++ {
					if h[i*n+j] != h[j*n+i] {
						t.Fatalf("%s syrk: not symmetric at %d,%d", c.Name(), i, j)
					}
				}
			}
		}
	}
}

func bf16(r *rand.Rand, n int) ([]uint16, []float32) {
	b := make([]uint16, n)
	f := make([]float32, n)
	for i := range b {
		b[i] = uint16(math.Float32bits(float32(r.NormFloat64())) >> 16)
		f[i] = math.Float32frombits(uint32(b[i]) << 16)
	}
	return b, f
}

func TestBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range variants(t) {
		for _, d := range [][3]int{{1, 7, 17}, {1, 300, 513}, {3, 300, 513}, {7, 63, 129}, {129, 17, 300}, {200, 600, 300}} {
			m, n, k := d[0], d[1], d[2]
			for _, acc := range []bool{false, true} {
				a := randVec(r, m*k)
				b, bf := bf16(r, n*k)
				cc := randVec(r, m*n)
				var c0 []float32
				if acc {
					c0 = append([]float32(nil), cc...)
				}
				c.MatMulNTBF16(cc, a, b, m, n, k, acc)
				A, B := operands(nt, a, bf, m, n, k)
				checkGemm(t, fmt.Sprintf("%s bf16 %dx%dx%d", c.Name(), m, n, k), cc, c0, A, B, m, n, k)
			}
		}
	}
}

// Bitwise identical results for 1, 2, 3 and 5 workers, and from run to run.
func TestDeterminism(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	type tc struct {
		s       shape
		m, n, k int
	}
	cases := []tc{{nt, 300, 257, 513}, {nn, 300, 257, 513}, {tn, 300, 257, 513}, {nt, 1, 1000, 700}, {nt, 3, 1000, 700}, {nn, 1, 1000, 700}, {tn, 1000, 40, 300}, {nt, 1000, 2, 300}}
	for _, base := range variants(t) {
		for _, cs := range cases {
			a, b := randVec(r, cs.m*cs.k), randVec(r, cs.k*cs.n)
			c0 := randVec(r, cs.m*cs.n)
			var ref []float32
			for _, w := range []int{1, 2, 3, 5, 2} {
				cc := append([]float32(nil), c0...)
				runShape(base.WithWorkers(w), cs.s, cc, a, b, cs.m, cs.n, cs.k, true)
				if ref == nil {
					ref = cc
					continue
				}
				for i := range cc {
					if math.Float32bits(cc[i]) != math.Float32bits(ref[i]) {
						t.Fatalf("%s %v %dx%dx%d: workers=%d differs at %d", base.Name(), cs.s, cs.m, cs.n, cs.k, w, i)
					}
				}
			}
		}
		// Syrk and bf16.
		n, k := 400, 300
		x := randVec(r, k*n)
		h0 := symRand(r, n)
		bw, _ := bf16(r, n*k)
		var ref, refB []float32
		for _, w := range []int{1, 2, 3, 5} {
			c := base.WithWorkers(w)
			h := append([]float32(nil), h0...)
			c.SyrkTN(h, x, n, k)
			cb := make([]float32, k*n)
			c.MatMulNTBF16(cb, x, bw, k, n, k, false)
			if ref == nil {
				ref, refB = h, cb
				continue
			}
			for i := range h {
				if math.Float32bits(h[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("%s syrk: workers=%d differs at %d", base.Name(), w, i)
				}
			}
			for i := range cb {
				if math.Float32bits(cb[i]) != math.Float32bits(refB[i]) {
					t.Fatalf("%s bf16: workers=%d differs at %d", base.Name(), w, i)
				}
			}
		}
	}
}

func TestVariants(t *testing.T) {
	av := Available()
	if len(av) == 0 || av[len(av)-1] != "purego" {
		t.Fatalf("Available() = %v", av)
	}
	if _, err := NewVariant("nope"); err == nil {
		t.Fatal("unknown variant accepted")
	}
	if New().Variant() != av[0] {
		t.Fatalf("New() = %s, want %s", New().Variant(), av[0])
	}
	t.Log(Info())
}

// Reading A in place must give the same bits as packing it.
func TestDirectMatchesPacked(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, base := range variants(t) {
		for _, d := range [][3]int{{63, 17, 129}, {300, 257, 100}, {2045, 64, 172}, {130, 500, 300}} {
			m, n, k := d[0], d[1], d[2]
			a, b := randVec(r, m*k), randVec(r, k*n)
			for _, s := range []shape{nt, nn, tn} {
				A := view{a, k, 1, nil}
				if s == tn {
					A = view{a, 1, m, nil}
				}
				kn := base.kern // as gemm narrows it
				for nk := kn.narrow; nk != nil && n <= nk.nr; nk = nk.narrow {
					kn = nk
				}
				if !readsDirect(A, kn.mr, kn.nr, n, kn.nc) {
					t.Fatalf("%s %v %dx%dx%d: expected the direct path", base.Name(), s, m, n, k)
				}
				c1, c2 := make([]float32, m*n), make([]float32, m*n)
				runShape(base, s, c1, a, b, m, n, k, false)
				packed := *base
				packed.noDirect = true
				runShape(&packed, s, c2, a, b, m, n, k, false)
				for i := range c1 {
					if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
						t.Fatalf("%s %v %dx%dx%d: direct and packed differ at %d", base.Name(), s, m, n, k, i)
					}
				}
			}
		}
	}
}

// TN products one column panel wide read A in place too (whatever its
// stride); same bits as packing it, including ragged panels, k > kc and
// accumulation.
func TestDirectSinglePanelTN(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, base := range variants(t) {
		for _, d := range [][3]int{{128, 16, 256}, {77, 13, 300}, {50, 8, 40}, {129, 32, 257}, {7, 3, 600}} {
			m, n, k := d[0], d[1], d[2]
			a, b := randVec(r, m*k), randVec(r, k*n)
			kn := base.kern // as gemm narrows it
			for nk := kn.narrow; nk != nil && n <= nk.nr; nk = nk.narrow {
				kn = nk
			}
			if n <= kn.nr && !readsDirect(view{a, 1, m, nil}, kn.mr, kn.nr, n, kn.nc) {
				t.Fatalf("%s TN %dx%dx%d: expected the direct path", base.Name(), m, n, k)
			}
			for _, acc := range []bool{false, true} {
				c1, c2 := randVec(r, m*n), make([]float32, m*n)
				copy(c2, c1)
				base.MatMulTN(c1, a, b, m, n, k, acc)
				packed := *base
				packed.noDirect = true
				packed.MatMulTN(c2, a, b, m, n, k, acc)
				for i := range c1 {
					if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
						t.Fatalf("%s TN %dx%dx%d acc=%v: direct and packed differ at %d", base.Name(), m, n, k, acc, i)
					}
				}
			}
		}
	}
}

// On the GEMM path (m > smallM) the first rows of a big product have the same
// bits as the same rows computed alone, in every shape.
func TestBatchInvariance(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	const m, mSub, n, k = 300, 7, 530, 600
	for _, c := range variants(t) {
		for _, s := range []shape{nt, nn, tn} {
			a, b := randVec(r, m*k), randVec(r, k*n)
			big := make([]float32, m*n)
			runShape(c, s, big, a, b, m, n, k, false)
			sub := make([]float32, mSub*n)
			as := a[:mSub*k]
			if s == tn { // A is k×m: take the first mSub columns
				as = make([]float32, k*mSub)
				for p := 0; p < k; p++ {
					copy(as[p*mSub:(p+1)*mSub], a[p*m:p*m+mSub])
				}
			}
			runShape(c, s, sub, as, b, mSub, n, k, false)
			for i := range sub {
				if math.Float32bits(sub[i]) != math.Float32bits(big[i]) {
					t.Fatalf("%s %v: row %d col %d differs between m=%d and m=%d", c.Name(), s, i/n, i%n, m, mSub)
				}
			}
		}
	}
}

// Row chunking (mcMax) must not change results: rows past a chunk boundary
// match the same rows computed alone.
func TestTallA(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	m, n, k := mcMax+37, 40, 300
	c, _ := NewVariant(Available()[0])
	a, b := randVec(r, m*k), randVec(r, k*n)
	for _, s := range []shape{nt, tn} {
		cc := make([]float32, m*n)
		runShape(c, s, cc, a, b, m, n, k, false)
		A, B := operands(s, a, b, m, n, k)
		checkGemm(t, fmt.Sprintf("tall %v", s), cc, nil, A, B, m, n, k)
	}
	x := randVec(r, 50*(mcMax+5))
	h := make([]float32, (mcMax+5)*(mcMax+5))
	c.SyrkTN(h, x, mcMax+5, 50)
	X := func(i, p int) float64 { return float64(x[p*(mcMax+5)+i]) }
	checkGemm(t, "tall syrk", h, make([]float32, len(h)), X, func(p, j int) float64 { return X(j, p) }, mcMax+5, mcMax+5, 50)
}

// The AVX-512 and AVX2 GEMM kernels run the same per-element FMA chain (one
// fused multiply-add per k, in order, per kc block) and the AVX2 row kernels
// mimic the AVX-512 lane layout, so every product is bitwise identical:
// results reproduce across AVX2-only and AVX-512 machines.
func TestAVX2MatchesAVX512(t *testing.T) {
	c512, err1 := NewVariant("avx512")
	c2, err2 := NewVariant("avx2")
	if err1 != nil || err2 != nil {
		t.Skip("needs both variants")
	}
	r := rand.New(rand.NewPCG(21, 22))
	for _, d := range [][3]int{{1, 300, 1000}, {3, 100, 77}, {5, 7, 9}, {300, 257, 513}, {2045, 64, 172}, {64, 600, 40}} {
		m, n, k := d[0], d[1], d[2]
		a, b := randVec(r, m*k), randVec(r, k*n)
		c0 := randVec(r, m*n)
		bw, _ := bf16(r, n*k)
		x, y := append([]float32(nil), c0...), append([]float32(nil), c0...)
		c512.MatMulNTBF16(x, a, bw, m, n, k, true)
		c2.MatMulNTBF16(y, a, bw, m, n, k, true)
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("bf16 %dx%dx%d: avx512 and avx2 differ at %d", m, n, k, i)
			}
		}
		for _, s := range []shape{nt, nn, tn} {
			x, y := append([]float32(nil), c0...), append([]float32(nil), c0...)
			runShape(c512, s, x, a, b, m, n, k, true)
			runShape(c2, s, y, a, b, m, n, k, true)
			for i := range x {
				if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
					t.Fatalf("%v %dx%dx%d: avx512 and avx2 differ at %d", s, m, n, k, i)
				}
			}
		}
		h0 := symRand(r, n)
		x, y = append([]float32(nil), h0...), append([]float32(nil), h0...)
		c512.SyrkTN(x, b, n, k)
		c2.SyrkTN(y, b, n, k)
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("syrk %dx%d: avx512 and avx2 differ at %d", n, k, i)
			}
		}
	}
}

// Many goroutines sharing the pool get correct, identical results.
func TestConcurrentCallers(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	m, n, k := 200, 150, 300
	a, b := randVec(r, m*k), randVec(r, k*n)
	c := New()
	ref := make([]float32, m*n)
	c.MatMulNT(ref, a, b, m, n, k, false)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := make([]float32, m*n)
			for it := 0; it < 5; it++ {
				c.WithWorkers(1+g%4).MatMulNT(cc, a, b, m, n, k, false)
				for i := range cc {
					if math.Float32bits(cc[i]) != math.Float32bits(ref[i]) {
						errs <- fmt.Sprintf("goroutine %d: differs at %d", g, i)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// Narrow and ragged products (head-dim-8 attention shapes, ragged last
// panels of 1..8 and 9..16 columns) give the same bits on the SIMD variants
// as the AVX2 6×16 kernel alone (no narrower kernel), whichever narrow
// kernel computes them.
func TestNarrowKernelsBitwise(t *testing.T) {
	k2 := kernels["avx2"]
	if k2 == nil || k2.narrow == nil {
		t.Skip("no narrow AVX2 kernel")
	}
	var cs []*CPU
	for _, name := range Available() {
		if name == "purego" {
			continue
		}
		c, err := NewVariant(name)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	ref2, _ := NewVariant("avx2")
	r := rand.New(rand.NewPCG(23, 24))
	for _, d := range [][3]int{{512, 8, 256}, {256, 8, 512}, {13, 8, 7}, {25, 5, 33}, {31, 3, 1}, {40, 40, 17}, {29, 36, 64}, {12, 24, 9}, {100, 72, 20}} {
		m, n, k := d[0], d[1], d[2]
		a, b := randVec(r, m*k), randVec(r, k*n)
		c0 := randVec(r, m*n)
		for _, s := range []shape{nt, nn, tn} {
			for _, acc := range []bool{false, true} {
				ref := append([]float32(nil), c0...)
				nk := k2.narrow
				k2.narrow = nil
				runShape(ref2, s, ref, a, b, m, n, k, acc)
				k2.narrow = nk
				for _, c := range cs {
					x := append([]float32(nil), c0...)
					runShape(c, s, x, a, b, m, n, k, acc)
					for i := range x {
						if math.Float32bits(x[i]) != math.Float32bits(ref[i]) {
							t.Fatalf("%s %v %dx%dx%d acc=%v: differs from the 6×16 kernel at %d", c.Variant(), s, m, n, k, acc, i)
						}
					}
				}
			}
		}
	}
}

// MatMulNTCausal must give MatMulNT's bits on every visible entry (column
// ≤ past + row mod T), for every variant, one and two workers, ragged
// tiles, T not dividing m, and past > 0.
func TestMatMulNTCausal(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, base := range variants(t) {
		for _, d := range [][5]int{{256, 128, 16, 128, 0}, {512, 256, 8, 256, 0}, {100, 70, 9, 37, 33}, {13, 13, 5, 13, 0}, {4, 9, 3, 2, 7}, {301, 300, 40, 300, 0}, {96, 140, 16, 48, 92}} {
			m, n, k, T, past := d[0], d[1], d[2], d[3], d[4]
			a, b := randVec(r, m*k), randVec(r, n*k)
			want := make([]float32, m*n)
			base.MatMulNT(want, a, b, m, n, k, false)
			for _, w := range []int{1, 2} {
				got := make([]float32, m*n)
				for i := range got {
					got[i] = float32(math.NaN())
				}
				base.WithWorkers(w).MatMulNTCausal(got, a, b, m, n, k, T, past)
				skipped := 0
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						if j > past+i%T {
							if got[i*n+j] != got[i*n+j] {
								skipped++
							}
							continue
						}
						if math.Float32bits(got[i*n+j]) != math.Float32bits(want[i*n+j]) {
							t.Fatalf("%s %v workers=%d: [%d,%d] = %g, MatMulNT %g", base.Name(), d, w, i, j, got[i*n+j], want[i*n+j])
						}
					}
				}
				if m == 256 && skipped == 0 && base.Variant() != "purego" {
					t.Fatalf("%s %v: no tile was skipped", base.Name(), d)
				}
			}
		}
	}
}
