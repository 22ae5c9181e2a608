package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

// The backend row kernels must give bitwise nn's own float32 loops (the
// semantic reference), for every CPU variant.
func TestRowKernelsMatchNN(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, name := range cpu.Available() {
		c, err := cpu.NewVariant(name)
		if err != nil {
			t.Fatal(err)
		}
		var rk backend.RowKernels = c
		for _, n := range []int{1, 5, 16, 17, 64, 100, 257, 512} {
			for _, amp := range []float64{0.1, 3, 40} {
				row := make([]float32, n)
				for i := range row {
					row[i] = float32(amp * r.NormFloat64())
				}
				for _, last := range []int{0, n / 2, n - 1} {
					want := append([]float32(nil), row...)
					got := append([]float32(nil), row...)
					softmaxCausalRow(nil, want, last, 0.25)
					softmaxCausalRow(rk, got, last, 0.25)
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s softmax n=%d last=%d [%d]: %g, nn %g", name, n, last, i, got[i], want[i])
						}
					}
				}
			}
		}
		for _, n := range []int{0, 3, 16, 1000, 40000} {
			gate, up := make([]float32, n), make([]float32, n)
			for i := range gate {
				gate[i], up[i] = float32(5*r.NormFloat64()), float32(r.NormFloat64())
			}
			want, got := make([]float32, n), make([]float32, n)
			SwiGLUForwardT(want, gate, up)
			SwiGLUForwardBE(c, got, gate, up)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s swiglu n=%d [%d]: %g, nn %g", name, n, i, got[i], want[i])
				}
			}
		}
	}
}
