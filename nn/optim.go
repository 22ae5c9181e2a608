package nn

// The element-wise kernels of gradient clipping and SGD (train.GradNorm,
// train.ClipGrads, train.SGD and the host device's SumSquares, Scale and
// SGD all call these, so the host and device paths agree bit for bit).

// optimChunk is the element count per parallel task of Scale and SGD
// (element-wise, so the split does not change any bit).
const optimChunk = 1 << 15

func optimParallel(n int, f func(i0, i1 int)) {
	if n <= optimChunk {
		f(0, n)
		return
	}
	nc := (n + optimChunk - 1) / optimChunk
	ParallelFor(nc, func(c int) { f(c*optimChunk, min(n, (c+1)*optimChunk)) })
}

// SumSquares returns acc + Σ x[i]², accumulated in float64 one element
// after the other in index order (a float32 square is exact in float64), so
// continuing acc across tensors gives the global sum in tensor order.
func SumSquares[F Float](acc float64, x []F) float64 {
	for _, v := range x {
		acc += float64(v) * float64(v)
	}
	return acc
}

// Scale multiplies x by c in place.
func Scale[F Float](x []F, c F) {
	optimParallel(len(x), func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			x[i] *= c
		}
	})
}

// SGD is torch's SGD step with coupled weight decay, w ← w − lr·(g + wd·w),
// computed in float64 and rounded to F once per element.
func SGD[F Float](w, g []F, lr, wd float64) {
	g = g[:len(w)]
	optimParallel(len(w), func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			wi := float64(w[i])
			w[i] = F(wi - lr*(float64(g[i])+wd*wi))
		}
	})
}
