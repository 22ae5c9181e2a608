package shear

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/train"
)

// TestShrinkMatchesMaskedForward: the physically shrunk model, run by the
// inference forward (model.Forward, an independent implementation), gives
// the logits of the masked dense model (float64 graph) under the same
// deterministic gates: layers, heads (GQA groups left uneven), neurons and
// hidden units removed, soft values on the survivors.
func TestShrinkMatchesMaskedForward(t *testing.T) {
	be := cpuBackend(t)
	cases := append([]modeltest.Cfg{
		{Heads: 8, KV: 4, HD: 4, Hidden: 32, Inter: 24, Vocab: 29, Layers: 3},
		{Heads: 8, KV: 2, HD: 4, Hidden: 32, Inter: 24, Vocab: 29, Layers: 3, Tied: true},
	}, gradCases...)
	for ci, rc := range cases {
		m := modeltest.Random(rc, false, uint64(ci+10))
		base, _ := BaseShape(m)
		target := Shape{Layers: base.Layers - 1, Hidden: base.Hidden - 3, Heads: base.Heads - 1, Inter: base.Inter - 2}
		target.KVHeads = kvFor(base, target.Heads)
		r := rand.New(rand.NewPCG(uint64(ci), 9))
		la := NewGates[float64](base, 0)
		for _, k := range la.all() {
			for i := range k {
				k[i] = -4 + 8*r.Float64()
			}
		}
		z := DeterministicGates(base, target, la)
		small, err := Shrink(m, z)
		if err != nil {
			t.Fatalf("case %d: %v", ci, err)
		}
		if len(small.Layers) != target.Layers || small.Cfg.Hidden != target.Hidden {
			t.Fatalf("case %d: shrunk to %d layers, hidden %d; want %v", ci, len(small.Layers), small.Cfg.Hidden, target)
		}
		for li, l := range small.Layers {
			if l.Heads != target.Heads || l.Inter != target.Inter {
				t.Fatalf("case %d layer %d: %d heads, MLP %d; want %v", ci, li, l.Heads, l.Inter, target)
			}
		}
		// The arithmetic counts the fewest K/V heads; with MHA that is exact.
		if got, want := small.NumParams(), Params(m.Cfg, target); (rc.KV == rc.Heads && got != want) || got < want {
			t.Errorf("case %d: shrunk model has %d parameters, the arithmetic says %d", ci, got, want)
		}
		w := train.Convert[float64](train.FromModel(m))
		want := (&graph[float64]{w: w, z: z}).forward(gradSeqs)
		got := small.Forward(be, gradSeqs)
		var num, den float64
		for i := range want {
			num += (float64(got[i]) - want[i]) * (float64(got[i]) - want[i])
			den += want[i] * want[i]
		}
		if e := math.Sqrt(num / den); e > 1e-5 || math.IsNaN(e) {
			t.Errorf("case %d: shrunk vs masked logits: relative error %.3g", ci, e)
		} else {
			t.Logf("case %d (%v → %v, KV per layer %d): relative error %.2g", ci, base, target, small.Layers[0].KVHeads, e)
		}
	}
}
