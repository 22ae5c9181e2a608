//go:build amd64 && !purego

package train

import "github.com/klauspost/cpuid/v2"

var hasAdamWAsm = cpuid.CPU.Supports(cpuid.AVX)

// adamwAVX updates n elements (a multiple of 8) and reports whether every
// gradient was finite.
//
//go:noescape
func adamwAVX(w, gr, m, v *float32, n int, c *adamwConsts) bool

func adamwAsm(w, g, m, v *float32, n int, c *adamwConsts) bool { return adamwAVX(w, g, m, v, n, c) }
