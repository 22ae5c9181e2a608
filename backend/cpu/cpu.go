// Package cpu is the CPU backend. This first version is a plain, parallel
// pure-Go implementation; SIMD assembly variants are selected at start-up.
package cpu

import (
	"runtime"
	"sync"

	"github.com/darwinlm/darwinlm-go/backend"
)

func init() {
	backend.Register("cpu", func() (backend.Backend, error) { return New(), nil }, true)
	backend.Register("purego", func() (backend.Backend, error) { return New(), nil }, false)
}

// CPU implements backend.Backend.
type CPU struct{ workers int }

// New returns a CPU backend using GOMAXPROCS workers.
func New() *CPU { return &CPU{workers: runtime.GOMAXPROCS(0)} }

func (c *CPU) Name() string { return "purego" }

// parallelRows splits [0,m) into contiguous chunks. Each output row is
// produced by exactly one worker, so results do not depend on the split.
func (c *CPU) parallelRows(m int, f func(i0, i1 int)) {
	w := c.workers
	if w > m {
		w = m
	}
	if w <= 1 {
		f(0, m)
		return
	}
	var wg sync.WaitGroup
	chunk := (m + w - 1) / w
	for i0 := 0; i0 < m; i0 += chunk {
		i1 := min(i0+chunk, m)
		wg.Add(1)
		go func() { defer wg.Done(); f(i0, i1) }()
	}
	wg.Wait()
}

func (c *CPU) MatMulNT(cc, a, b []float32, m, n, k int, acc bool) {
	backend.CheckDims("MatMulNT", cc, a, b, m*n, m*k, n*k)
	c.parallelRows(m, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			ar := a[i*k : i*k+k]
			cr := cc[i*n : i*n+n]
			for j := 0; j < n; j++ {
				br := b[j*k : j*k+k]
				var s float32
				for p, av := range ar {
					s += av * br[p]
				}
				if acc {
					cr[j] += s
				} else {
					cr[j] = s
				}
			}
		}
	})
}

func (c *CPU) MatMulNN(cc, a, b []float32, m, n, k int, acc bool) {
	backend.CheckDims("MatMulNN", cc, a, b, m*n, m*k, k*n)
	c.parallelRows(m, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			cr := cc[i*n : i*n+n]
			if !acc {
				clear(cr)
			}
			for p := 0; p < k; p++ {
				av := a[i*k+p]
				br := b[p*n : p*n+n]
				for j, bv := range br {
					cr[j] += av * bv
				}
			}
		}
	})
}

func (c *CPU) MatMulTN(cc, a, b []float32, m, n, k int, acc bool) {
	backend.CheckDims("MatMulTN", cc, a, b, m*n, k*m, k*n)
	c.parallelRows(m, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			cr := cc[i*n : i*n+n]
			if !acc {
				clear(cr)
			}
			for p := 0; p < k; p++ {
				av := a[p*m+i]
				br := b[p*n : p*n+n]
				for j, bv := range br {
					cr[j] += av * bv
				}
			}
		}
	})
}

func (c *CPU) SyrkTN(h, x []float32, n, k int) {
	c.MatMulTN(h, x, x, n, n, k, true)
}
