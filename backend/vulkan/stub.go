//go:build !vulkan || !cgo

package vulkan

import (
	"errors"

	"github.com/darwinlm/darwinlm-go/backend"
)

// Available reports whether this binary was built with the Vulkan backend.
const Available = false

var errNotBuilt = errors.New("vulkan backend not built into this binary (make build-vulkan: needs cgo and libvulkan-dev)")

func init() {
	backend.RegisterDevice("vulkan", func(int) (backend.Backend, error) { return nil, errNotBuilt }, false)
}

// Info describes the Vulkan devices for `darwinlm info`.
func Info() string { return "vulkan:    not built into this binary (make build-vulkan)" }
