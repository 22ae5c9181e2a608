// Package mmap loads checkpoint files (safetensors, torchbin): mapped
// read-only on unix, read into memory elsewhere or where mapping fails.
package mmap

import (
	"fmt"
	"io"
	"math"
	"os"
)

// Load maps the file at path read-only, or reads it into memory where
// mapping fails (or is unavailable); release unmaps it. Errors name the file
// but carry no package prefix: callers add theirs.
func Load(path string) (data []byte, release func() error, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size > 0 {
		data, release = mapFile(fh, size)
	}
	if data == nil {
		if size > math.MaxInt {
			return nil, nil, fmt.Errorf("%s: %d bytes do not fit in memory", path, size)
		}
		data = make([]byte, size)
		if _, err := io.ReadFull(fh, data); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		release = func() error { return nil }
	}
	return data, release, nil
}
