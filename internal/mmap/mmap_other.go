//go:build !unix

package mmap

import "os"

// mapFile returns nil: without mmap Load reads the file.
func mapFile(f *os.File, size int64) ([]byte, func() error) { return nil, nil }
