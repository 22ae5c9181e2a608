package train

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// A device failure at any point of fine-tuning, of a Trainer step (with
// distillation), of caching teacher logits or of a training run (a GPU
// out of memory; on the host device and on a copying one that takes the
// GPU's code paths) is returned as an error, never a panic, and a run
// leaves no half-written checkpoint behind.
func TestDeviceFailureIsAnError(t *testing.T) {
	be := cpu(t)
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2, Bias: true}
	seqs := testSeqs(3, 9, rc.Vocab, 5)
	teacher := randomModel(rc, false, 9)
	for _, copyDev := range []bool{false, true} {
		name := map[bool]string{false: "host", true: "copy"}[copyDev]
		for _, clip := range []float64{0, 1} {
			t.Run("finetuner/"+name+map[bool]string{false: "", true: "/clip"}[clip > 0], func(t *testing.T) {
				o := SelectionPreset()
				o.Clip = clip
				modeltest.Sweep(t, 40, func(fb modeltest.FailBackend) error {
					ft := NewFineTuner(fb, o)
					defer ft.Close()
					_, err := ft.Train(randomModel(rc, true, 3), seqs)
					return err
				}, copyDev, be, nil)
			})
		}
		for _, topK := range []int{0, 4} {
			t.Run("cacheteacher+distill/"+name+map[bool]string{false: "/full", true: "/topk"}[topK > 0], func(t *testing.T) {
				o := SelectionPreset()
				o.KDWeight, o.KDTopK = 0.5, topK
				modeltest.Sweep(t, 40, func(fb modeltest.FailBackend) error {
					tl, err := CacheTeacher(fb, teacher, seqs, topK)
					if err != nil {
						return err
					}
					ft := NewFineTuner(fb, o)
					defer ft.Close()
					_, err = ft.TrainDistill(randomModel(rc, true, 3), seqs, tl)
					return err
				}, copyDev, be, nil)
			})
			t.Run("trainer/"+name+map[bool]string{false: "/full", true: "/topk"}[topK > 0], func(t *testing.T) {
				o := DefaultOptions()
				o.KDWeight, o.KDTopK, o.Clip = 0.5, topK, 1
				modeltest.Sweep(t, 40, func(fb modeltest.FailBackend) error {
					tr, err := NewTrainer(fb, randomModel(rc, true, 3), teacher, o)
					if err != nil {
						return err
					}
					defer tr.Close()
					for range 2 {
						if _, err := tr.TrainStep(seqs[:2]); err != nil {
							return err
						}
					}
					return nil
				}, copyDev, be, nil)
			})
		}
		t.Run("run/"+name, func(t *testing.T) {
			toks := testSeqs(1, 200, rc.Vocab, 2)[0]
			var out string
			modeltest.Sweep(t, 30, func(fb modeltest.FailBackend) error {
				out = t.TempDir()
				_, err := Run(context.Background(), RunConfig{Backend: fb, Model: randomModel(rc, true, 1), ModelName: "random",
					Data: "synthetic", Tokens: toks, SeqLen: 16, Batch: 2, Steps: 3, Seed: 3, Options: DefaultOptions(),
					Out: out, CheckpointEvery: 1, Keep: 5})
				return err
			}, copyDev, be, func(n int) {
				ents, _ := os.ReadDir(out)
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".tmp") {
						t.Errorf("failing call %d: %s left behind", n, e.Name())
					}
				}
			})
		})
	}
}
