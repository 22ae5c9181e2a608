package prune

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// A device failure at any point of a database build (the layers run with
// the weights resident, the Hessians formed by Syrk; a GPU out of memory,
// on the host device and on a copying one that takes the GPU's code paths)
// is returned as an error, never a panic, and leaves no database and no
// temporary folder behind.
func TestBuildDeviceFailureIsAnError(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 4, KV: 2, HD: 4, Hidden: 16, Inter: 24, Vocab: 29, Layers: 2}, false, 4)
	calib := randomSeqs(11, 6, 12, m.Cfg.Vocab)
	for _, copyDev := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "copy"}[copyDev], func(t *testing.T) {
			var parent string
			modeltest.Sweep(t, 30, func(fb modeltest.FailBackend) error {
				parent = t.TempDir()
				return Build(context.Background(), fb, m, calib, BuildOptions{Levels: 2, ModelID: "random"}, filepath.Join(parent, "db"))
			}, copyDev, cpu(t), func(n int) {
				if ents, _ := os.ReadDir(parent); len(ents) != 0 {
					t.Errorf("failing call %d: %s left behind", n, ents[0].Name())
				}
			})
		})
	}
}
