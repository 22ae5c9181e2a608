package shear

import (
	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// matNT, matNN and matTN route float32 products to the backend and run
// float64 ones (gradient checks only) with plain loops, as package train
// does for its graph.
func matNT[F nn.Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulNT(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	nn.ParallelFor(m, func(i int) {
		for j := 0; j < n; j++ {
			var s F
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[j*k+p]
			}
			if acc {
				c[i*n+j] += s
			} else {
				c[i*n+j] = s
			}
		}
	})
}

func matNN[F nn.Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulNN(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	nn.ParallelFor(m, func(i int) {
		cr := c[i*n : i*n+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			for j, bv := range b[p*n : p*n+n] {
				cr[j] += av * bv
			}
		}
	})
}

func matTN[F nn.Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulTN(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	nn.ParallelFor(m, func(i int) {
		cr := c[i*n : i*n+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[p*m+i]
			for j, bv := range b[p*n : p*n+n] {
				cr[j] += av * bv
			}
		}
	})
}
