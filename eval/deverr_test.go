package eval

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// A device failure at any point of a perplexity run or of lm-eval scoring
// (a GPU out of memory, on the host device and on a copying one that takes
// the GPU's code paths) is returned as an error, never a panic.
func TestDeviceFailureIsAnError(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 2, KV: 1, HD: 4, Hidden: 8, Inter: 12, Vocab: 301, Layers: 2}, true, 1)
	ids := make([]int, 40)
	for i := range ids {
		ids[i] = (i*37 + 5) % 301
	}
	reqs := []Request{
		{Context: "the cat", Continuation: " sat", Group: 0},
		{Context: "the cat", Continuation: " ran", Group: 0},
		{Context: "a dog", Continuation: " barks", Group: 1},
	}
	for _, copyDev := range []bool{false, true} {
		name := map[bool]string{false: "host", true: "copy"}[copyDev]
		t.Run("ppl/"+name, func(t *testing.T) {
			modeltest.Sweep(t, 40, func(be modeltest.FailBackend) error {
				_, err := PerplexityIDs(m, be, m.Cfg.Vocab, ids, 8, nil)
				return err
			}, copyDev, cpu.New(), nil)
		})
		t.Run("loglikelihoods/"+name, func(t *testing.T) {
			modeltest.Sweep(t, 40, func(be modeltest.FailBackend) error {
				lm := &ModelLM{M: m, Be: be, Tok: mergeTok{}, BatchTokens: 12}
				_, err := lm.Loglikelihoods(reqs)
				return err
			}, copyDev, cpu.New(), nil)
		})
	}
}
