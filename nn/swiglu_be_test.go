package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

// SwiGLUBackwardBE gives the bits of SwiGLUBackward on every CPU variant.
func TestSwiGLUBackwardBEBitwise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 16, 17, 33, 172, 256 * 172, 1<<14 + 5} {
		g, u, d := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range g {
			g[i], u[i], d[i] = float32(r.NormFloat64()*4), float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		if n > 0 {
			g[0] = float32(math.NaN())
		}
		if n > 3 {
			g[1], g[2], g[3] = float32(math.Inf(1)), float32(math.Inf(-1)), -100
		}
		if n > 20 {
			// NaNs of different payloads meeting in one operation: the
			// vector kernel must keep the Go loop's operand order.
			nan1, nan2 := math.Float32frombits(0x7fc00abc), math.Float32frombits(0xffc12345)
			d[17], u[17] = nan1, nan2
			d[18], g[18] = nan1, nan2
			u[19], g[19] = nan2, nan1
			d[20] = nan2
		}
		wg, wu := make([]float32, n), make([]float32, n)
		SwiGLUBackward(wg, wu, d, g, u)
		for _, name := range cpu.Available() {
			be, err := cpu.NewVariant(name)
			if err != nil {
				t.Fatal(err)
			}
			dg, du := make([]float32, n), make([]float32, n)
			SwiGLUBackwardBE(be, dg, du, d, g, u)
			for i := range dg {
				if math.Float32bits(dg[i]) != math.Float32bits(wg[i]) || math.Float32bits(du[i]) != math.Float32bits(wu[i]) {
					t.Fatalf("%s n=%d [%d]: (%g, %g), want (%g, %g)", name, n, i, dg[i], du[i], wg[i], wu[i])
				}
			}
		}
	}
}
