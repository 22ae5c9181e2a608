package fastmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

func ulps(a, b float32) int64 {
	ia, ib := int64(math.Float32bits(a)), int64(math.Float32bits(b))
	d := ia - ib
	if d < 0 {
		d = -d
	}
	return d
}

func TestExpf(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	check := func(x float32) {
		want := float32(math.Exp(float64(x)))
		got := Expf(x)
		if want == 0 || math.IsInf(float64(want), 0) {
			if got != want {
				t.Fatalf("Expf(%g) = %g, want %g", x, got, want)
			}
			return
		}
		// Subnormal results lose relative precision; compare absolutely.
		if want < 1.2e-38 {
			if math.Abs(float64(got-want)) > 2e-45*4 {
				t.Fatalf("Expf(%g) = %g, want %g", x, got, want)
			}
			return
		}
		if u := ulps(got, want); u > 2 {
			t.Fatalf("Expf(%g) = %g, want %g (%d ulp)", x, got, want, u)
		}
	}
	for i := 0; i < 200000; i++ {
		check(float32(r.Float64()*200 - 105))
		check(float32(r.NormFloat64() * 3))
	}
	for _, x := range []float32{0, -0, 1, -1, 88.7, 88.73, -87.3, -103.9, -104, 1e-8, -1e-8} {
		check(x)
	}
	if !math.IsNaN(float64(Expf(float32(math.NaN())))) {
		t.Fatal("Expf(NaN)")
	}
}

func BenchmarkExpf(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i)/512 - 4
	}
	var s float32
	b.Run("expf", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				s += Expf(v)
			}
		}
	})
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				s += float32(math.Exp(float64(v)))
			}
		}
	})
	_ = s
}
