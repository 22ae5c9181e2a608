//go:build unix

package mmap

import (
	"os"
	"syscall"
)

// mapFile maps the file read-only; it returns nil when mapping fails, and
// Load then reads the file instead.
func mapFile(f *os.File, size int64) ([]byte, func() error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil
	}
	return b, func() error { return syscall.Munmap(b) }
}
