// Package backend defines the small set of dense kernels that every model,
// pruning and training computation goes through, so that the CPU (SIMD
// assembly, pure Go) and GPU (Vulkan) implementations are interchangeable
// without touching model code.
//
// All matrices are dense, row-major float32 slices. A weight matrix of a
// linear layer is stored as [out × in], as in PyTorch, so a linear layer is
// Y = X · Wᵀ (MatMulNT).
package backend

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Backend runs the matrix products. Implementations must be deterministic:
// for the same inputs the result is bit-for-bit identical from run to run and
// independent of the number of worker threads (each output element is
// reduced by one worker in a fixed order).
//
// When acc is false C is overwritten, otherwise the product is added to C.
type Backend interface {
	// Name is the variant, e.g. "cpu-avx512", "cpu-avx2", "purego", "vulkan".
	Name() string

	// MatMulNT computes C[m×n] (+)= A[m×k] · B[n×k]ᵀ.  (linear forward: Y = X·Wᵀ)
	MatMulNT(c, a, b []float32, m, n, k int, acc bool)
	// MatMulNN computes C[m×n] (+)= A[m×k] · B[k×n].  (linear backward: dX = dY·W)
	MatMulNN(c, a, b []float32, m, n, k int, acc bool)
	// MatMulTN computes C[m×n] (+)= A[k×m]ᵀ · B[k×n]. (weight gradient: dW = dYᵀ·X)
	MatMulTN(c, a, b []float32, m, n, k int, acc bool)
	// SyrkTN computes H[n×n] += X[k×n]ᵀ · X[k×n] (Hessian collection). The full
	// symmetric matrix is written.
	SyrkTN(h, x []float32, n, k int)
}

var (
	mu       sync.Mutex
	registry = map[string]func() (Backend, error){}
	devices  = map[string]func(device int) (Backend, error){}
	autoTry  []string // device backends "auto" tries before the default
	def      string
)

// Notes receives the note printed when "auto" falls back to the default
// backend (stderr; tests may redirect it).
var Notes io.Writer = os.Stderr

// Register makes a backend constructor available under name. The first
// registration with isDefault wins the default slot.
func Register(name string, ctor func() (Backend, error), isDefault bool) {
	mu.Lock()
	defer mu.Unlock()
	registry[name] = ctor
	if isDefault && def == "" {
		def = name
	}
}

// RegisterDevice registers a backend with several devices (Vulkan): ctor
// gets the device index, or −1 to let the backend choose (a GPU). With auto,
// "auto" tries it first and falls back to the default backend, with a note on
// Notes, when it fails (no loader, no GPU, ...).
func RegisterDevice(name string, ctor func(device int) (Backend, error), auto bool) {
	mu.Lock()
	defer mu.Unlock()
	devices[name] = ctor
	if auto {
		autoTry = append(autoTry, name)
	}
}

// Names lists the registered backends.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	for n := range devices {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns the backend with the given name; "" or "auto" gives the default
// (after trying the GPU backends registered for auto).
func Get(name string) (Backend, error) { return Open(name, -1) }

// Open is Get with a device index for backends with several devices
// (--device); device < 0 lets the backend choose. A device index given to a
// backend without devices, or to "auto", is an error.
//
// A name may carry its device as "name:N" (e.g. "vulkan:0"), for settings
// that hold only a backend name (the search's); device must then be < 0.
func Open(name string, device int) (Backend, error) {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		n, err := strconv.Atoi(name[i+1:])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("backend %q: the device after ':' must be an index ≥ 0", name)
		}
		if device >= 0 && device != n {
			return nil, fmt.Errorf("backend %q and --device %d disagree", name, device)
		}
		name, device = name[:i], n
	}
	mu.Lock()
	auto := name == "" || name == "auto"
	tries := append([]string(nil), autoTry...)
	if auto {
		name = def
	}
	ctor, ok := registry[name]
	dctor, dok := devices[name]
	mu.Unlock()
	if auto {
		if device >= 0 {
			return nil, fmt.Errorf("--device %d needs an explicit --backend (e.g. vulkan)", device)
		}
		for _, n := range tries {
			mu.Lock()
			c := devices[n]
			mu.Unlock()
			be, err := c(-1)
			if err == nil {
				return be, nil
			}
			fmt.Fprintf(Notes, "note: backend auto: %v; using %s\n", err, name)
		}
	}
	switch {
	case dok:
		return dctor(device)
	case !ok:
		return nil, fmt.Errorf("unknown backend %q (available: %v)", name, Names())
	case device >= 0:
		return nil, fmt.Errorf("backend %q has no devices to choose with --device", name)
	}
	return ctor()
}

// RowKernels is optionally implemented by a backend with fast float32 row
// kernels for the model's exp-heavy element-wise ops. Implementations must
// give bitwise the results of nn's own float32 loops (fastmath.Expf, the same
// operation order), so that using them or not changes no bit.
type RowKernels interface {
	// SoftmaxCausalRow turns row[0..last] into softmax(scale·row[0..last])
	// (max subtracted, exps summed in float64 in index order, then scaled by
	// float32(1/sum)) and zeroes row[last+1:].
	SoftmaxCausalRow(row []float32, last int, scale float32)
	// SiLUMul writes out[i] = gate[i]/(1+exp(−gate[i]))·up[i] for
	// i < len(gate); out may alias gate or up.
	SiLUMul(out, gate, up []float32)
}
