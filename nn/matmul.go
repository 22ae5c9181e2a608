package nn

import "github.com/darwinlm/darwinlm-go/backend"

// MatNT computes c = a·bᵀ (a [m × k], b [n × k], c [m × n]; acc adds into
// c). float32 products run on the backend; float64 ones (gradient checks
// only) as plain parallel loops. MatNN (b [k × n]) and MatTN (a [k × m])
// are its siblings; together they are the products of the layer forward and
// backward passes.
func MatNT[F Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulNT(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	ParallelFor(m, func(i int) {
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

// MatNN computes c = a·b (a [m × k], b [k × n]); see MatNT.
func MatNN[F Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulNN(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	matRows(c, a, b, m, n, k, k, 1, acc)
}

// MatTN computes c = aᵀ·b (a [k × m], b [k × n]); see MatNT.
func MatTN[F Float](be backend.Backend, c, a, b []F, m, n, k int, acc bool) {
	if c32, ok := any(c).([]float32); ok {
		be.MatMulTN(c32, any(a).([]float32), any(b).([]float32), m, n, k, acc)
		return
	}
	matRows(c, a, b, m, n, k, 1, m, acc)
}

// matRows is the plain row-by-row product behind MatNN and MatTN for
// non-float32 types: c[i,:] (+)= Σ_p a[i·ri + p·rp] · b[p,:].
func matRows[F Float](c, a, b []F, m, n, k, ri, rp int, acc bool) {
	ParallelFor(m, func(i int) {
		cr := c[i*n : i*n+n]
		if !acc {
			clear(cr)
		}
		for p := 0; p < k; p++ {
			av := a[i*ri+p*rp]
			for j, bv := range b[p*n : p*n+n] {
				cr[j] += av * bv
			}
		}
	})
}
