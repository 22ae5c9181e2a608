//go:build unix

// Package mmap maps checkpoint files read-only (safetensors, torchbin); where
// mapping is unavailable it returns nil and the caller reads the file.
package mmap

import (
	"os"
	"syscall"
)

// File maps the file read-only; it returns nil when mapping fails, and
// the caller then reads the file instead.
func File(f *os.File, size int64) ([]byte, func() error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil
	}
	return b, func() error { return syscall.Munmap(b) }
}
