package evolve

import (
	"context"
	"math"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// Scoring on resident weights is bitwise the host scoring, and a search
// evaluation on a device that copies (the GPU code path: the candidate
// uploaded once, fine-tuned and scored on the device) gives bitwise the
// host evaluation's scores.
func TestEvaluateOnDeviceMatchesHost(t *testing.T) {
	be := cpu.New()
	cb := modeltest.CopyBackend{Backend: be}
	dense := tinyModel()
	st := scaleStitcher{dense}
	pool := randomPool(60, dense.Cfg.Vocab, 48, 6)
	lens, tp := poolLens(pool)
	b := drawBatch(nil, lens, 0, 400, newStream(2, streamStage, 0, 400))
	b.Train = []int{0, 1, 2}
	lv := []int{3, 0, 5, 2}
	for _, kind := range []string{FitnessKL, FitnessSparseKL, FitnessPPL} {
		var cache *DenseCache
		if kind != FitnessPPL {
			k := 0
			if kind == FitnessSparseKL {
				k = 10
			}
			var err error
			if cache, err = NewDenseCache(be, dense, pool, k, "", DefaultCacheMemory); err != nil {
				t.Fatal(err)
			}
		}
		var scores []Score
		for _, b0 := range []interface{ Name() string }{be, cb} {
			var ev *ModelEvaluator
			var err error
			if b0 == cb {
				ev, err = NewModelEvaluator(cb, 1, dense, st, train.SelectionPreset(), kind, cache, pool, tp, nil)
			} else {
				ev, err = NewModelEvaluator(be, 1, dense, st, train.SelectionPreset(), kind, cache, pool, tp, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			sc, err := ev.Evaluate(context.Background(), 0, lv, b, true)
			if err != nil {
				t.Fatal(err)
			}
			scores = append(scores, sc)
			if b0 == be {
				// scoreResident is score, bitwise.
				cand, _ := st.Stitch(lv)
				fs, ids := ev.fitSeqs(b)
				r, err := cand.Upload(nn.DeviceFor(be))
				if err != nil {
					t.Fatal(err)
				}
				got, err := ev.fit.scoreResident(r, model.NewArena(r.Dev), fs, ids)
				if err != nil {
					t.Fatal(err)
				}
				if want := ev.fit.score(be, cand, fs, ids); math.Float64bits(got) != math.Float64bits(want) {
					t.Errorf("%s: resident score %v, host score %v", kind, got, want)
				}
			}
		}
		if scores[0] != scores[1] {
			t.Errorf("%s: copying device %+v, host %+v", kind, scores[1], scores[0])
		}
		if scores[0].Fitness == scores[0].Before {
			t.Errorf("%s: fine-tuning did not change the fitness", kind)
		}
	}
}
