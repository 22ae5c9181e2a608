package experiment

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// A device failure at any point of the KL-to-dense column (both models
// resident; a GPU out of memory, on the host device and on a copying one)
// is returned as an error, never a panic.
func TestKLToDenseDeviceFailure(t *testing.T) {
	rc := modeltest.Cfg{Heads: 4, KV: 2, HD: 4, Hidden: 16, Inter: 24, Vocab: 11, Layers: 2}
	a, b := modeltest.Random(rc, false, 1), modeltest.Random(rc, true, 2)
	ids := make([]int, 23)
	for i := range ids {
		ids[i] = (i * 7) % rc.Vocab
	}
	for _, copyDev := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "copy"}[copyDev], func(t *testing.T) {
			modeltest.Sweep(t, 40, func(fb modeltest.FailBackend) error {
				_, _, err := KLToDense(fb, a, b, ids, 5)
				return err
			}, copyDev, cpu.New(), nil)
		})
	}
}
