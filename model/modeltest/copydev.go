package modeltest

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// CopyDevice is a float32 device that behaves like a GPU towards the code
// above it: Resident uploads a copy and Host has no host view, so weights
// are copied in, results downloaded and trained weights written back.
// Every operation is the host device's (nn.Host), so its results must be
// bitwise those of the host path: the tests of the device code paths that
// a GPU takes, on the CPU.
type CopyDevice struct{ backend.Device[float32] }

// NewCopyDevice returns a CopyDevice computing on be.
func NewCopyDevice(be backend.Backend) CopyDevice { return CopyDevice{nn.NewHost[float32](be)} }

// Name marks the device as a copying one.
func (d CopyDevice) Name() string { return "copy of " + d.Device.Name() }

// Resident uploads a copy of host.
func (d CopyDevice) Resident(host []float32) (backend.View, error) {
	v, err := d.Alloc(len(host))
	if err != nil {
		return backend.View{}, err
	}
	return v, d.Upload(v, host)
}

// Host reports that no buffer has a host view.
func (d CopyDevice) Host(backend.View) ([]float32, bool) { return nil, false }

// CopyBackend is a backend whose device (nn.DeviceFor) is a new CopyDevice
// on the wrapped backend, so that the Backend-taking API runs the GPU code
// paths.
type CopyBackend struct{ backend.Backend }

// Float32Device returns a new CopyDevice.
func (b CopyBackend) Float32Device() backend.Device[float32] { return NewCopyDevice(b.Backend) }
