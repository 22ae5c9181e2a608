package cpu

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// Info describes the CPU and the selected kernels, for `darwinlm info`.
func Info() string {
	c := cpuid.CPU
	yn := func(f cpuid.FeatureID) string {
		if c.Supports(f) {
			return "yes"
		}
		return "no"
	}
	kib := func(n int) string {
		if n <= 0 {
			return "?"
		}
		if n >= 1<<20 {
			return fmt.Sprintf("%d MiB", n>>20)
		}
		return fmt.Sprintf("%d KiB", n>>10)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cpu:       %s (family %d, model %d, x86-64-v%d)\n", c.BrandName, c.Family, c.Model, c.X64Level())
	fmt.Fprintf(&b, "cores:     %d physical, %d logical\n", c.PhysicalCores, c.LogicalCores)
	fmt.Fprintf(&b, "features:  AVX2=%s FMA=%s AVX512F=%s AVX512BF16=%s\n", yn(cpuid.AVX2), yn(cpuid.FMA3), yn(cpuid.AVX512F), yn(cpuid.AVX512BF16))
	fmt.Fprintf(&b, "caches:    L1D %s, L2 %s, L3 %s\n", kib(c.Cache.L1D), kib(c.Cache.L2), kib(c.Cache.L3))
	k := best()
	fmt.Fprintf(&b, "variants:  %s (selected: %s, %dx%d tile, kc=%d nc=%d)\n",
		strings.Join(Available(), ", "), k.name, k.mr, k.nr, k.kc, k.nc)
	fmt.Fprintf(&b, "workers:   %d (GOMAXPROCS)", runtime.GOMAXPROCS(0))
	return b.String()
}
