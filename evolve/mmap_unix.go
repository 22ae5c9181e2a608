//go:build unix

package evolve

import (
	"os"
	"syscall"
	"unsafe"
)

// mapFloats maps a new file of n float32 values, unlinked at once.
func mapFloats(dir string, n int64) ([]float32, func() error, error) {
	f, err := os.CreateTemp(dir, ".dense-logits-*.f32")
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	defer os.Remove(f.Name())
	if err := f.Truncate(n * 4); err != nil {
		return nil, nil, err
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(n*4), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), func() error { return syscall.Munmap(b) }, nil
}
