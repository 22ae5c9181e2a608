package nn

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// The host device allocates nothing per operation beyond what the kernel
// it calls allocates (checked on the operations of a layer's forward).
func TestHostNoAllocs(t *testing.T) {
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	d := NewHost[float32](be)
	const rows, dim = 4, 64
	x, w, out, rstd := make([]float32, rows*dim), make([]float32, dim), make([]float32, rows*dim), make([]float32, rows)
	vx, _ := d.Resident(x)
	vw, _ := d.Resident(w)
	vo, _ := d.Resident(out)
	vr, _ := d.Resident(rstd)
	rope := NewRope(8, 10000, false, nil)
	rope.Ensure(rows)
	seqs := []backend.Seq{{T: rows}}
	cases := map[string][2]func(){
		"MatNT":   {func() { d.MatNT(vo, vx, vx, rows, rows, dim, false) }, func() { MatNT(be, out, x, x, rows, rows, dim, false) }},
		"RMSNorm": {func() { d.RMSNorm(vo, vr, vx, vw, rows, dim, 1e-5) }, func() { RMSNormForwardT(out, rstd, x, w, rows, dim, 1e-5) }},
		"AddBias": {func() { d.AddBias(vo, vw, rows) }, func() { AddBiasT(out, w, rows) }},
		"Add":     {func() { d.Add(vo, vx) }, func() {}},
		"Rope":    {func() { d.Rope(vx, rope, seqs, 8, false) }, func() { RopeForwardT(rope, x, rows, 8, 0) }},
		"SiLUMul": {func() { d.SiLUMul(vo, vx, vx) }, func() { SwiGLUForwardBE(be, out, x, x) }},
	}
	for name, f := range cases {
		if nh, nd := testing.AllocsPerRun(20, f[0]), testing.AllocsPerRun(20, f[1]); nh > nd {
			t.Errorf("%s: %v allocations per call, the kernel alone %v", name, nh, nd)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}
