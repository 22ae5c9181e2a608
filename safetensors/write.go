package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// Tensor is a tensor to write. Data is stored as DType (F32 or BF16).
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []float32
}

// WriteFile writes tensors (in the given order) and metadata to path,
// through a temporary file in the same folder, fsync and rename.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	var hdr strings.Builder
	hdr.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		hdr.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(metadata[k])
			hdr.Write(kb)
			hdr.WriteByte(':')
			hdr.Write(vb)
		}
		hdr.WriteByte('}')
		first = false
	}
	seen := map[string]bool{}
	off := int64(0)
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" || seen[t.Name] {
			return fmt.Errorf("safetensors: %s: bad or duplicate tensor name %q", path, t.Name)
		}
		seen[t.Name] = true
		if t.DType != F32 && t.DType != BF16 {
			return fmt.Errorf("safetensors: %s: tensor %q: writing dtype %q is not supported (F32, BF16)", path, t.Name, t.DType)
		}
		n := int64(1)
		for _, s := range t.Shape {
			if s < 0 {
				return fmt.Errorf("safetensors: %s: tensor %q: negative dimension in shape %v", path, t.Name, t.Shape)
			}
			n *= s
		}
		if n != int64(len(t.Data)) {
			return fmt.Errorf("safetensors: %s: tensor %q: shape %v needs %d values, have %d", path, t.Name, t.Shape, n, len(t.Data))
		}
		size := n * t.DType.Size()
		if !first {
			hdr.WriteByte(',')
		}
		first = false
		nb, _ := json.Marshal(t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		sb, _ := json.Marshal(shape)
		fmt.Fprintf(&hdr, `%s:{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}`, nb, t.DType, sb, off, off+size)
		off += size
	}
	hdr.WriteByte('}')
	// Pad with spaces so that the data starts on an 8-byte boundary.
	for (8+hdr.Len())%8 != 0 {
		hdr.WriteByte(' ')
	}

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(atomicfile.FileMode()); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	w := newBufWriter(tmp)
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(hdr.Len()))
	w.write(lenb[:])
	w.write([]byte(hdr.String()))
	for _, t := range tensors {
		switch t.DType {
		case F32:
			for _, v := range t.Data {
				w.u32(math.Float32bits(v))
			}
		case BF16:
			for _, v := range t.Data {
				w.u16(BF16FromFloat32(v))
			}
		}
	}
	if err = w.flush(); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if d, e := os.Open(dir); e == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

type bufWriter struct {
	f   *os.File
	buf []byte
	err error
}

func newBufWriter(f *os.File) *bufWriter { return &bufWriter{f: f, buf: make([]byte, 0, 1<<20)} }

func (w *bufWriter) write(b []byte) {
	if len(w.buf)+len(b) > cap(w.buf) {
		w.flush()
	}
	if len(b) > cap(w.buf) {
		if w.err == nil {
			_, w.err = w.f.Write(b)
		}
		return
	}
	w.buf = append(w.buf, b...)
}

func (w *bufWriter) u32(v uint32) {
	if len(w.buf)+4 > cap(w.buf) {
		w.flush()
	}
	w.buf = binary.LittleEndian.AppendUint32(w.buf, v)
}

func (w *bufWriter) u16(v uint16) {
	if len(w.buf)+2 > cap(w.buf) {
		w.flush()
	}
	w.buf = binary.LittleEndian.AppendUint16(w.buf, v)
}

func (w *bufWriter) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.f.Write(w.buf)
	}
	w.buf = w.buf[:0]
	return w.err
}
