//go:build amd64 && !purego

package nn

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/klauspost/cpuid/v2"
)

var hasAdamWAsm = cpuid.CPU.Supports(cpuid.AVX)

// adamwAsm updates n elements (a multiple of 8) with AVX and reports
// whether every gradient was finite. c's eight float32 fields are read in
// declaration order.
//
//go:noescape
func adamwAsm(w, gr, m, v *float32, n int, c *backend.AdamWStep) bool
