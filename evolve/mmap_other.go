//go:build !unix

package evolve

// mapFloats falls back to memory where mmap is unavailable.
func mapFloats(dir string, n int64) ([]float32, func() error, error) {
	return make([]float32, n), func() error { return nil }, nil
}
