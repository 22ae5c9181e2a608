package train

import (
	"math"
	"testing"
)

// Gradient clipping shrinks an SGD step (no weight decay) by
// clip/(‖g‖+1e-6), ‖g‖ the unclipped norm, measured here from the weights
// alone: an unclipped step moves them by Δ = −lr·g, so ‖g‖ = ‖Δ‖/lr, and
// the clipped step must move them by Δ·coef. A clip above ‖g‖ changes
// nothing; SGD's weight decay adds −lr·wd·w. This is independent of the clipping code: the device-vs-host
// tests cannot see clipping (or the decay) skipped on both sides.
func TestClipAndDecayScaleTheStep(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2, Bias: true, Tied: true}
	seqs := testSeqs(1, 9, rc.Vocab, 7)
	const lr = 0.5
	o := Options{Optimizer: "sgd", LR: lr, Schedule: "constant", Steps: 1}
	runs := map[string]func(t *testing.T, o Options) []float32{
		"Trainer": func(t *testing.T, o Options) []float32 {
			m := randomModel(rc, true, 4)
			tr, err := NewTrainer(be, m, nil, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.TrainStep(seqs); err != nil {
				t.Fatal(err)
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			return flatWeights(m)
		},
		"FineTuner": func(t *testing.T, o Options) []float32 {
			m := randomModel(rc, true, 4)
			st, err := NewFineTuner(be, o).Train(m, seqs)
			if err != nil || st.Steps != 1 {
				t.Fatalf("Train: %+v, %v", st, err)
			}
			return flatWeights(m)
		},
	}
	w0 := flatWeights(randomModel(rc, true, 4))
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			w1 := run(t, o)
			var ss, mx float64
			d := make([]float64, len(w0))
			for i := range w0 {
				d[i] = float64(w1[i]) - float64(w0[i])
				ss += d[i] * d[i]
				mx = max(mx, math.Abs(d[i]))
			}
			gn := math.Sqrt(ss) / lr
			if gn == 0 {
				t.Fatal("the step did not move the weights")
			}
			check := func(clip, coef, wd float64) {
				oc := o
				oc.Clip, oc.WeightDecay = clip, wd
				w2 := run(t, oc)
				bad := 0
				for i := range w0 {
					want := d[i]*coef - lr*wd*float64(w0[i])
					got := float64(w2[i]) - float64(w0[i])
					// float32 rounding of w1 and w2, and ‖g‖ from rounded Δ.
					tol := 2e-7*math.Abs(float64(w0[i])) + 1e-4*mx*coef
					if math.Abs(got-want) > tol {
						if bad++; bad < 5 {
							t.Errorf("clip %g: weight %d moved by %g, want %g (coef %g)", clip, i, got, want, coef)
						}
					}
				}
				if bad > 0 {
					t.Fatalf("clip %g: %d of %d weights off", clip, bad, len(w0))
				}
			}
			check(gn/4, (gn/4)/(gn+1e-6), 0)
			check(gn*2, 1, 0)
			// Weight decay: w ← w − lr·(g + wd·w), clipped or not.
			check(0, 1, 0.01)
			check(gn/4, (gn/4)/(gn+1e-6), 0.01)
		})
	}
}
