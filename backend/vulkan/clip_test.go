//go:build vulkan && cgo

package vulkan

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// clipDev returns a Dev and a helper that uploads x as a view.
func clipDev(t *testing.T, o Options) (*Dev, func(x []float32) backend.View) {
	x := open(t, o).F32()
	return x, func(h []float32) backend.View {
		t.Helper()
		v, err := x.Resident(h)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// SumSquares within its stated tolerance (relative 1e-6 on Σx², i.e. 5e-7
// on the norm) against a float64 sum, on magnitudes spanning twelve
// decades, long windows (many elements per invocation), windows split by a
// small binding limit, and more views than one batch of partials.
func TestSumSquaresPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func(n int) ([]float32, float64) {
		x := make([]float32, n)
		var s float64
		for i := range x {
			x[i] = float32(r.NormFloat64() * math.Pow(10, 4*r.Float64()-3))
			s += float64(x[i]) * float64(x[i])
		}
		return x, s
	}
	worst := 0.0
	check := func(what string, x *Dev, vs []backend.View, want float64) {
		t.Helper()
		got, err := x.SumSquares(vs)
		if err != nil {
			t.Fatal(err)
		}
		rel := math.Abs(got-want) / want
		worst = math.Max(worst, rel)
		if !(rel <= 1e-6) {
			t.Errorf("%s: %.12g, float64 %.12g (relative %.2g)", what, got, want, rel)
		}
	}
	// One long tensor: 3M elements, 256 workgroups of ~12k (47 per invocation).
	x, up := clipDev(t, Options{})
	big, want := gen(3_000_017)
	check("3M elements", x, []backend.View{up(big)}, want)
	// Windows of 4096 elements and 700 views: several batches of partials.
	xs, ups := clipDev(t, Options{MaxBindBytes: 1 << 14})
	var vs []backend.View
	want = 0
	for i := 0; i < 700; i++ {
		v, s := gen(1 + r.IntN(9000))
		vs = append(vs, ups(v))
		want += s
	}
	check("700 views in windows", xs, vs, want)
	// Through staging buffers (discrete GPUs).
	xg, upg := clipDev(t, Options{ForceStaging: true})
	v, s := gen(100_003)
	check("staging", xg, []backend.View{upg(v)}, s)
	t.Logf("worst relative error of Σx² %.2g", worst)
	// Overflowing squares give +Inf (the host's float64 sum stays finite).
	v[7] = 3e19
	if got, err := xg.SumSquares([]backend.View{upg(v)}); err != nil || !math.IsInf(got, 1) {
		t.Errorf("a square beyond float32: %v, %v; want +Inf", got, err)
	}
}

// Scale is bitwise a float32 product; SGD is the float64 step rounded to
// float32 within one ulp of w plus the float32 rounding of lr·(g + wd·w).
func TestScaleSGDDevice(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x, up := clipDev(t, Options{MaxBindBytes: 1 << 14})
	const n = 20_011
	a, w, g := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range a {
		a[i], w[i], g[i] = float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64()*1e-2)
	}
	const c = float32(0.123456)
	va := up(a)
	x.Scale(va, c)
	got := make([]float32, n)
	if err := x.Download(got, va); err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if got[i] != a[i]*c {
			t.Fatalf("Scale[%d] = %v, want %v", i, got[i], a[i]*c)
		}
	}
	lr, wd := 0.3, 0.01
	vw, vg := up(w), up(g)
	x.SGD(vw, vg, lr, wd)
	if err := x.Download(got, vw); err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range w {
		wi, gi := float64(w[i]), float64(g[i])
		ref := float32(wi - lr*(gi+wd*wi))
		ulp := float64(math.Nextafter32(float32(math.Abs(float64(ref))), float32(math.Inf(1)))) - math.Abs(float64(ref))
		bound := ulp + 0x1p-22*lr*(math.Abs(gi)+wd*math.Abs(wi))
		d := math.Abs(float64(got[i]) - float64(ref))
		worst = math.Max(worst, d/bound)
		if d > bound {
			t.Fatalf("SGD[%d] = %v, float64 step %v (bound %.3g)", i, got[i], ref, bound)
		}
	}
	t.Logf("SGD: worst difference to the float64 step %.2f of the bound", worst)
}
