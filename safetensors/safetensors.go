// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length N, N bytes of JSON describing the tensors
// ({name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}),
// then the raw little-endian tensor bytes, with offsets relative to byte 8+N.
//
// Files are memory-mapped when possible. Headers are validated strictly: the
// tensors must tile the data section exactly, without gaps or overlaps. Every
// error names the file and the tensor or field at fault.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"sync"

	"github.com/darwinlm/darwinlm-go/internal/mmap"
	"github.com/x448/float16"
)

// DType is a safetensors element type name.
type DType string

const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// dtypeSizes lists every dtype of the format; only F32, F16 and BF16 can be
// converted to float32.
var dtypeSizes = map[DType]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// Size returns the byte size of one element, or 0 for an unknown dtype.
func (d DType) Size() int64 { return dtypeSizes[d] }

// MaxHeaderSize bounds the JSON header (100 MB, as in the reference library).
const MaxHeaderSize = 100 << 20

// TensorInfo describes one tensor of a file. Begin and End are offsets into
// the data section.
type TensorInfo struct {
	Name       string
	DType      DType
	Shape      []int64
	Begin, End int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t *TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// Header is a parsed and validated header.
type Header struct {
	// DataStart is the file offset of the data section (8+N).
	DataStart int64
	// Tensors in file (header) order.
	Tensors []*TensorInfo
	// Metadata is the __metadata__ map (nil when absent).
	Metadata map[string]string
	byName   map[string]*TensorInfo
}

// Lookup returns the named tensor's description.
func (h *Header) Lookup(name string) (*TensorInfo, bool) {
	t, ok := h.byName[name]
	return t, ok
}

type rawInfo struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// ParseHeader parses and validates the header of a safetensors file. prefix
// holds at least the file's first 8+N bytes (it may hold the whole file);
// fileSize is the size of the whole file; name is used in errors.
func ParseHeader(name string, prefix []byte, fileSize int64) (*Header, error) {
	if fileSize < 8 || len(prefix) < 8 {
		return nil, fmt.Errorf("safetensors: %s: file is %d bytes, shorter than the 8-byte header length", name, fileSize)
	}
	n := binary.LittleEndian.Uint64(prefix[:8])
	if n > uint64(fileSize-8) {
		return nil, fmt.Errorf("safetensors: %s: header length %d exceeds the file size %d", name, n, fileSize)
	}
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: %s: header length %d exceeds the %d-byte limit", name, n, MaxHeaderSize)
	}
	if n < 2 {
		return nil, fmt.Errorf("safetensors: %s: header length %d is too short for a JSON object", name, n)
	}
	if uint64(len(prefix)) < 8+n {
		return nil, fmt.Errorf("safetensors: %s: only %d header bytes available, need %d", name, len(prefix)-8, n)
	}
	js := prefix[8 : 8+n]
	h := &Header{DataStart: int64(8 + n), byName: map[string]*TensorInfo{}}
	dataLen := fileSize - h.DataStart

	dec := json.NewDecoder(bytes.NewReader(js))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: header is not JSON: %v", name, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("safetensors: %s: header is not a JSON object", name)
	}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("safetensors: %s: header JSON: %v", name, err)
		}
		key, ok := kt.(string)
		if !ok {
			return nil, fmt.Errorf("safetensors: %s: header JSON: key is not a string", name)
		}
		if seen[key] {
			return nil, fmt.Errorf("safetensors: %s: tensor %q appears twice in the header", name, key)
		}
		seen[key] = true
		if key == "__metadata__" {
			var meta map[string]string
			if err := dec.Decode(&meta); err != nil {
				return nil, fmt.Errorf("safetensors: %s: __metadata__ must map strings to strings: %v", name, err)
			}
			h.Metadata = meta
			continue
		}
		var ri rawInfo
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: %v", name, key, err)
		}
		d2 := json.NewDecoder(bytes.NewReader(raw))
		d2.DisallowUnknownFields()
		if err := d2.Decode(&ri); err != nil {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: bad entry: %v", name, key, err)
		}
		if ri.DType == nil || ri.Shape == nil || ri.DataOffsets == nil {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: entry needs dtype, shape and data_offsets", name, key)
		}
		t := &TensorInfo{Name: key, DType: DType(*ri.DType), Shape: *ri.Shape}
		es := t.DType.Size()
		if es == 0 {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: unknown dtype %q", name, key, *ri.DType)
		}
		if len(*ri.DataOffsets) != 2 {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: data_offsets must be [begin, end], got %d numbers", name, key, len(*ri.DataOffsets))
		}
		t.Begin, t.End = (*ri.DataOffsets)[0], (*ri.DataOffsets)[1]
		if t.Begin < 0 || t.End < t.Begin {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: bad data_offsets [%d, %d]", name, key, t.Begin, t.End)
		}
		if t.End > dataLen {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: data_offsets [%d, %d] run past the %d data bytes (file truncated?)", name, key, t.Begin, t.End, dataLen)
		}
		size := uint64(es)
		for _, s := range t.Shape {
			if s < 0 {
				return nil, fmt.Errorf("safetensors: %s: tensor %q: negative dimension in shape %v", name, key, t.Shape)
			}
			hi, lo := bits.Mul64(size, uint64(s))
			if hi != 0 || lo > math.MaxInt64 {
				return nil, fmt.Errorf("safetensors: %s: tensor %q: shape %v overflows", name, key, t.Shape)
			}
			size = lo
		}
		if size != uint64(t.End-t.Begin) {
			return nil, fmt.Errorf("safetensors: %s: tensor %q: shape %v of %s needs %d bytes, data_offsets [%d, %d] give %d", name, key, t.Shape, t.DType, size, t.Begin, t.End, t.End-t.Begin)
		}
		h.Tensors = append(h.Tensors, t)
		h.byName[key] = t
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("safetensors: %s: header JSON: %v", name, err)
	}
	// Trailing bytes may only be whitespace (writers pad the header with spaces).
	rest := js[dec.InputOffset():]
	if len(bytes.TrimRight(rest, " \t\r\n\x00")) != 0 {
		return nil, fmt.Errorf("safetensors: %s: header has trailing data after the JSON object", name)
	}
	// The tensors must tile the data section exactly.
	sorted := append([]*TensorInfo(nil), h.Tensors...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Begin != sorted[j].Begin {
			return sorted[i].Begin < sorted[j].Begin
		}
		return sorted[i].End < sorted[j].End
	})
	pos := int64(0)
	prev := ""
	for _, t := range sorted {
		if t.Begin < pos {
			return nil, fmt.Errorf("safetensors: %s: tensor %q [%d, %d] overlaps tensor %q (ends at %d)", name, t.Name, t.Begin, t.End, prev, pos)
		}
		if t.Begin > pos {
			return nil, fmt.Errorf("safetensors: %s: tensor %q starts at %d, leaving a gap after %d", name, t.Name, t.Begin, pos)
		}
		pos = t.End
		prev = t.Name
	}
	if pos != dataLen {
		return nil, fmt.Errorf("safetensors: %s: tensors cover %d of the %d data bytes", name, pos, dataLen)
	}
	return h, nil
}

// File is an open safetensors file.
type File struct {
	Path string
	*Header
	data   []byte // the whole file
	unmap  func() error
	closed bool
}

// Open maps (or reads) a safetensors file and validates its header.
func Open(path string) (*File, error) {
	data, unmap, err := mmap.Load(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	h, err := ParseHeader(path, data, int64(len(data)))
	if err != nil {
		unmap()
		return nil, err
	}
	return &File{Path: path, Header: h, data: data, unmap: unmap}, nil
}

// Close unmaps the file. Slices returned by Bytes become invalid.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	return f.unmap()
}

// Bytes returns the raw bytes of a tensor (a view into the mapping).
func (f *File) Bytes(name string) ([]byte, *TensorInfo, error) {
	if f.closed {
		return nil, nil, fmt.Errorf("safetensors: %s: file is closed", f.Path)
	}
	t, ok := f.byName[name]
	if !ok {
		return nil, nil, fmt.Errorf("safetensors: %s: no tensor %q", f.Path, name)
	}
	return f.data[f.DataStart+t.Begin : f.DataStart+t.End], t, nil
}

// Float32 returns a freshly allocated float32 copy of a tensor, converting
// F16 and BF16.
func (f *File) Float32(name string) ([]float32, *TensorInfo, error) {
	b, t, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	out, err := ToFloat32(b, t.DType)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.Path, name, err)
	}
	return out, t, nil
}

// ToFloat32 converts little-endian bytes of dtype F32, F16 or BF16.
func ToFloat32(b []byte, dt DType) ([]float32, error) {
	switch dt {
	case F32:
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case BF16:
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
		return out, nil
	case F16:
		tab := f16Table()
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = tab[binary.LittleEndian.Uint16(b[2*i:])]
		}
		return out, nil
	}
	return nil, fmt.Errorf("dtype %s cannot be converted to float32 (only F32, F16, BF16)", dt)
}

var f16Tab = sync.OnceValue(func() *[65536]float32 {
	var t [65536]float32
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return &t
})

func f16Table() *[65536]float32 { return f16Tab() }

// BF16FromFloat32 rounds to the nearest bfloat16 (ties to even); NaN stays NaN.
func BF16FromFloat32(f float32) uint16 {
	u := math.Float32bits(f)
	if f != f {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}
