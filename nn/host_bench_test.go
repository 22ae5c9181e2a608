package nn

import (
	"testing"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
)

// Per-operation overhead of the host device over calling the kernel
// directly, on operations small enough that the overhead would show: a
// tiny MatNT and RMSNorm. Reports ns per call of each and their
// difference (overhead-ns).
func BenchmarkHostOverhead(b *testing.B) {
	be, err := backend.Get("")
	if err != nil {
		b.Fatal(err)
	}
	d := NewHost[float32](be)
	const m, n, k = 4, 8, 8
	A, B, C := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	for i := range A {
		A[i] = float32(i%7) - 3
	}
	for i := range B {
		B[i] = float32(i%5) - 2
	}
	va, _ := d.Resident(A)
	vb, _ := d.Resident(B)
	vc, _ := d.Resident(C)
	const rows, dim = 4, 64
	x, w, out, rstd := make([]float32, rows*dim), make([]float32, dim), make([]float32, rows*dim), make([]float32, rows)
	for i := range x {
		x[i] = float32(i%11) - 5
	}
	for i := range w {
		w[i] = 1
	}
	vx, _ := d.Resident(x)
	vw, _ := d.Resident(w)
	vo, _ := d.Resident(out)
	vr, _ := d.Resident(rstd)
	cases := []struct {
		name         string
		direct, host func()
	}{
		{"MatNT", func() { MatNT(be, C, A, B, m, n, k, false) }, func() { d.MatNT(vc, va, vb, m, n, k, false) }},
		{"RMSNorm", func() { RMSNormForwardT(out, rstd, x, w, rows, dim, 1e-5) }, func() { d.RMSNorm(vo, vr, vx, vw, rows, dim, 1e-5) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var td, th time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				for j := 0; j < 100; j++ {
					c.direct()
				}
				t1 := time.Now()
				for j := 0; j < 100; j++ {
					c.host()
				}
				th += time.Since(t1)
				td += t1.Sub(t0)
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
			calls := float64(b.N * 100)
			b.ReportMetric(float64(td.Nanoseconds())/calls, "direct-ns/call")
			b.ReportMetric(float64(th.Nanoseconds())/calls, "host-ns/call")
			b.ReportMetric(float64((th-td).Nanoseconds())/calls, "overhead-ns/call")
		})
	}
}
