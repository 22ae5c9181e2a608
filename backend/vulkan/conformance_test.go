//go:build vulkan && cgo

package vulkan

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/devicetest"
)

// TestConformance runs the device conformance suite on the Vulkan device
// (lavapipe in CI) with the stated tolerance, 1e-5 relative.
func TestConformance(t *testing.T) {
	devicetest.Run(t, func(t *testing.T) backend.Device[float32] { return open(t, Options{}).F32() }, 1e-5)
}

// TestConformanceStaging runs the suite with device buffers that are not
// mapped (uploads and downloads through staging copies), the path of
// discrete GPUs.
func TestConformanceStaging(t *testing.T) {
	devicetest.Run(t, func(t *testing.T) backend.Device[float32] { return open(t, Options{ForceStaging: true}).F32() }, 1e-5)
}

// TestConformanceSplit runs the suite with bindings of at most 320 bytes
// (75 floats, the smallest round limit at which every case's rows and one
// query's keys still fit), so that nearly every operand runs in windows:
// losses by rows, embedding tables by row ranges, Rope, AddBias, RMSNorm
// and the element-wise operations by rows or elements, the attention
// forward in chunks of query rows (a saved probability block over a
// binding as compact rows), its backward in groups of sequences and of K/V
// heads (docs/vulkan.md, "Operands larger than one binding").
func TestConformanceSplit(t *testing.T) {
	devicetest.Run(t, func(t *testing.T) backend.Device[float32] { return open(t, Options{MaxBindBytes: 320}).F32() }, 1e-5)
}
