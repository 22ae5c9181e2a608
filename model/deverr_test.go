package model_test

import (
	"fmt"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/nn"
)

// A device failure at any point of the Resident API (upload, Forward,
// shared-prefix segments, Logits, KV-cache steps, RunLayer; on the host
// device and on a copying one that takes the GPU's code paths) is returned
// as an error wrapping the failure, never a panic; and the failure is
// transient, as a GPU's out-of-memory is: the same device then gives the
// host's results bit for bit (no stale error or state is left behind).
func TestResidentDeviceFailure(t *testing.T) {
	be, _ := backend.Get("")
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 2, Bias: true}, true, 5)
	seqs := [][]int{{1, 2, 3, 4}, {5, 6}}
	want := m.Forward(be, seqs)
	work := func(dev backend.Device[float32]) error {
		r, err := m.Upload(dev)
		if err != nil {
			return err
		}
		defer r.Release()
		if _, err := r.Forward(seqs); err != nil {
			return fmt.Errorf("Forward: %w", err)
		}
		x, rows, err := r.HiddenSegments([]model.Segment{{Tokens: []int{1, 2}, Parent: -1}, {Tokens: []int{3}, Parent: 0}})
		if err != nil {
			return fmt.Errorf("HiddenSegments: %w", err)
		}
		if _, err := r.Logits(x, rows); err != nil {
			return fmt.Errorf("Logits: %w", err)
		}
		c := m.NewCache()
		defer c.Release()
		for _, toks := range [][]int{{1, 2, 3}, {4}, {5}, {6, 7}} {
			if _, err := r.Step(c, toks); err != nil {
				return fmt.Errorf("Step: %w", err)
			}
		}
		ar := model.NewArena(dev)
		defer ar.Free()
		xv, err := dev.Alloc(6 * m.Cfg.Hidden)
		if err != nil {
			return err
		}
		defer dev.Free(xv)
		if err := r.RunLayer(ar, 1, xv, []int{4, 2}, nil); err != nil {
			return fmt.Errorf("RunLayer: %w", err)
		}
		return dev.Sync()
	}
	for _, copyDev := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "copy"}[copyDev], func(t *testing.T) {
			modeltest.Sweep(t, 60, func(fb modeltest.FailBackend) error {
				dev := nn.DeviceFor(fb)
				err := work(dev)
				if err != nil {
					r, err2 := m.Upload(dev)
					if err2 != nil {
						t.Fatalf("after %v: %v", err, err2)
					}
					got, err2 := r.Forward(seqs)
					r.Release()
					if err2 != nil {
						t.Fatalf("after %v: %v", err, err2)
					}
					sameBits(t, "Forward after a failure", got, want)
				}
				return err
			}, copyDev, be, nil)
		})
	}
}
