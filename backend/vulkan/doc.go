// Package vulkan is the GPU backend: GLSL compute shaders (package shaders,
// SPIR-V embedded) run through github.com/vkngwrapper/core/v2 on a Vulkan
// device. It needs cgo and libvulkan, so the implementation is behind the
// build tags `vulkan && cgo` (make build-vulkan); the default pure-Go build
// compiles a stub whose constructors return an error.
//
// Three levels:
//
//   - Device, Buffer and the buffer-level operations (Gemm, RMSNorm, Rope,
//     Softmax, LogSoftmax, SiLUMul, AdamW, CrossEntropy): tensors live in
//     device buffers, operations are recorded into one command buffer and
//     submitted in batches (Flush, or implicitly by Download); operands larger
//     than maxStorageBufferRange are split into windows.
//   - Dev (Device.F32): backend.Device[float32], the device-resident
//     interface model, train, prune and evolve run on (nn.DeviceFor picks it
//     through Backend.Float32Device): views over F32 Buffers, every model,
//     loss and optimizer operation as shaders, per-batch arenas for host
//     tables and scratch, sticky errors (dev.go, arena.go).
//   - Backend: backend.Backend on host slices (upload, dispatch, download per
//     call), registered as "vulkan", so that every command runs with
//     --backend vulkan [--device N]; its Float32Device is the Dev.
//
// Device choice: device −1 takes the first discrete, then integrated GPU; a
// CPU implementation such as lavapipe only when its index is given.
// Results agree with the CPU backend within a tolerance (float32 sums in a
// different order; see docs/vulkan.md), not bitwise.
package vulkan

// DType is the element type of a Buffer.
type DType int

const (
	F32  DType = iota // float32
	BF16              // bfloat16, two per 32-bit word (GEMM B operand only)
	F16               // IEEE half, two per 32-bit word (GEMM B operand only)
	I32               // int32 (cross-entropy targets)
)

func (t DType) size() int {
	if t == BF16 || t == F16 {
		return 2
	}
	return 4
}

func (t DType) String() string {
	return [...]string{"f32", "bf16", "f16", "i32"}[t]
}

// Options select and configure a device.
type Options struct {
	// Device is the index in the loader's device list (darwinlm info);
	// −1 picks the first discrete, then integrated GPU.
	Device int
	// Validation enables VK_LAYER_KHRONOS_validation with a debug messenger
	// that collects warnings and errors (ValidationMessages); it is an error
	// when the layer is not installed.
	Validation bool
	// MaxBindBytes, when > 0, lowers the largest range bound to one shader
	// binding below the device's maxStorageBufferRange (tests use it to
	// exercise the splitting on small operands).
	MaxBindBytes int
	// ForceStaging copies through a host-visible staging buffer even when the
	// device memory is host-visible (the path of discrete GPUs), for tests.
	ForceStaging bool
}

// AdamWParams are one AdamW step's scalars (see train.AdamW): t is the step
// number after increment, Decay = 1 − LR·WeightDecay.
type AdamWParams struct {
	Beta1, Beta2, Eps, LR, WeightDecay float64
	Step                               int
}
