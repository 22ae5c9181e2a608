package evolve

import (
	"context"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/train"
)

// A device failure at any point of a search's device work (the dense-logit
// cache, a candidate's fine-tuning and scoring, the held-out figures; a GPU
// out of memory, on the host device and on a copying one that takes the
// GPU's code paths) is returned as an error, never a panic.
func TestDeviceFailureIsAnError(t *testing.T) {
	be := cpu.New()
	dense := tinyModel()
	st := scaleStitcher{dense}
	pool := randomPool(12, dense.Cfg.Vocab, 24, 6)
	lens, tp := poolLens(pool)
	b := drawBatch(nil, lens, 0, 100, newStream(2, streamStage, 0, 100))
	b.Train = []int{0, 1}
	lv := []int{3, 0, 5, 2}
	for _, copyDev := range []bool{false, true} {
		name := map[bool]string{false: "host", true: "copy"}[copyDev]
		for _, kind := range []string{FitnessKL, FitnessSparseKL, FitnessPPL} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				modeltest.Sweep(t, 40, func(fb modeltest.FailBackend) error {
					var cache *DenseCache
					if kind != FitnessPPL {
						k := map[bool]int{false: 0, true: 10}[kind == FitnessSparseKL]
						var err error
						if cache, err = NewDenseCache(fb, dense, pool, k, "", DefaultCacheMemory); err != nil {
							return err
						}
						defer cache.Close()
					}
					ev, err := NewModelEvaluator(fb, 2, dense, st, train.SelectionPreset(), kind, cache, pool, tp, pool[:3])
					if err != nil {
						return err
					}
					if _, err := ev.Evaluate(context.Background(), 1, lv, b, true); err != nil {
						return err
					}
					_, _, _, err = ev.HeldOut(context.Background(), lv)
					return err
				}, copyDev, be, nil)
			})
		}
	}
}
