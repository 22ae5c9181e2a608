//go:build !amd64 || purego

package cpu

// Without assembly only the pure-Go kernels (kern_generic.go) are registered.

func copyChunks(dst []float32, ds int, src []float32, ss, n, w int) {
	copyChunksGo(dst, ds, src, ss, n, w)
}

func padChunks(dst []float32, ds int, src []float32, ss, n, rows, w int) {
	padChunksGo(dst, ds, src, ss, n, rows, w)
}
