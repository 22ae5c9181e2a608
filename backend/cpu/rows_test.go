package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestRowKernels(t *testing.T) {
	const u = 1.0 / (1 << 24)
	r := rand.New(rand.NewPCG(13, 14))
	for _, name := range Available() {
		kn := kernels[name]
		for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 1000} {
			a, b := randVec(r, n), randVec(r, n)
			bw, bf := bf16(r, n)
			var want, wantBF, mag, magBF float64
			for i := range a {
				want += float64(a[i]) * float64(b[i])
				mag += math.Abs(float64(a[i]) * float64(b[i]))
				wantBF += float64(a[i]) * float64(bf[i])
				magBF += math.Abs(float64(a[i]) * float64(bf[i]))
			}
			if got := kn.dot(a, b); math.Abs(float64(got)-want) > 2*float64(n+1)*u*mag+1e-30 {
				t.Errorf("%s dot n=%d: %g want %g", name, n, got, want)
			}
			if got := kn.dotBF16(a, bw); math.Abs(float64(got)-wantBF) > 2*float64(n+1)*u*magBF+1e-30 {
				t.Errorf("%s dotBF16 n=%d: %g want %g", name, n, got, wantBF)
			}
			y := randVec(r, n+3) // longer y: only len(x) elements change
			y0 := append([]float32(nil), y...)
			kn.axpy(0.5, a, y)
			for i := range y {
				want, ax := float64(y0[i]), 0.0
				if i < n {
					ax = 0.5 * float64(a[i])
					want += ax
				}
				if math.Abs(float64(y[i])-want) > 2*u*(math.Abs(float64(y0[i]))+math.Abs(ax)) {
					t.Fatalf("%s axpy n=%d: y[%d]=%g want %g", name, n, i, y[i], want)
				}
			}
		}
	}
}

func TestRowHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	x, w := randVec(r, 100), randVec(r, 100)
	out := make([]float32, 100)
	RMSNorm(out, x, w, 1e-5)
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	s := 1 / math.Sqrt(ss/100+1e-5)
	for i := range x {
		if want := float64(x[i]) * s * float64(w[i]); math.Abs(float64(out[i])-want) > 1e-5*math.Abs(want)+1e-6 {
			t.Fatalf("RMSNorm[%d] = %g, want %g", i, out[i], want)
		}
	}
	p := append([]float32(nil), x...)
	Softmax(p)
	var sum float64
	for i := range p {
		sum += float64(p[i])
		if i > 0 && (x[i] > x[i-1]) != (p[i] > p[i-1]) {
			t.Fatal("Softmax is not monotone")
		}
	}
	if math.Abs(sum-1) > 1e-5 {
		t.Fatalf("Softmax sums to %g", sum)
	}
	SiLUMul(out, x, w)
	for i := range x {
		g := float64(x[i])
		if want := g / (1 + math.Exp(-g)) * float64(w[i]); math.Abs(float64(out[i])-want) > 1e-6*math.Abs(want)+1e-7 {
			t.Fatalf("SiLUMul[%d] = %g, want %g", i, out[i], want)
		}
	}
	if Dot(x, w) == 0 {
		t.Fatal("Dot")
	}
}
