package nn

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/backend/devicetest"
)

// hostBackends are the CPU backends the host device is checked on.
func hostBackends(t testing.TB) map[string]backend.Backend {
	out := map[string]backend.Backend{}
	for _, name := range backend.Names() {
		be, err := backend.Get(name)
		if err != nil {
			continue // a device backend without its device
		}
		if _, ok := be.(interface {
			Float32Device() backend.Device[float32]
		}); ok {
			continue
		}
		out[name] = be
	}
	if len(out) == 0 {
		t.Fatal("no CPU backend registered")
	}
	return out
}

// The host device passes the conformance suite: float32 on every CPU
// backend, and the float64 reference device (with and without a backend).
func TestHostConformance(t *testing.T) {
	for name, be := range hostBackends(t) {
		t.Run(name, func(t *testing.T) {
			devicetest.Run(t, func(*testing.T) backend.Device[float32] { return DeviceFor(be) }, 1e-5)
		})
		t.Run(name+"/float64", func(t *testing.T) {
			devicetest.RunT(t, func(*testing.T) backend.Device[float64] { return NewHost[float64](be) }, 1e-12)
		})
	}
	t.Run("float64-nil-backend", func(t *testing.T) {
		devicetest.RunT(t, func(*testing.T) backend.Device[float64] { return NewHost[float64](nil) }, 1e-12)
	})
}
