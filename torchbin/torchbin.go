// Package torchbin reads PyTorch checkpoints written by torch.save (≥ 1.6,
// the zip format) that hold a state dict: a mapping from names to tensors,
// as Hugging Face's pytorch_model.bin and its shards do.
//
// The zip holds <prefix>/data.pkl (a pickle of the dict), <prefix>/data/<key>
// (the raw little-endian storages), <prefix>/version and optionally
// <prefix>/byteorder. The pickle is decoded by a small safe unpickler that
// never executes code: it accepts only the opcodes state dicts use and only
// the globals collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter and the torch.*Storage types; anything else
// is an error naming the opcode or global and the file. Tensors must be
// contiguous; their storages must be stored (uncompressed) zip entries,
// which are read in place from a memory mapping of the file.
//
// The legacy (pre-1.6, non-zip) torch.save format is detected and refused.
package torchbin

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"math"
	"math/bits"
	"path"
	"strings"

	"github.com/darwinlm/darwinlm-go/internal/mmap"
	"github.com/darwinlm/darwinlm-go/safetensors"
)

// MaxPickleSize bounds data.pkl (a 7B model's is about 100 KB).
const MaxPickleSize = 64 << 20

// legacyMagic is the pickled magic number that opens a pre-1.6 torch.save
// file: PROTO 2, LONG1 of 10 bytes, 0x1950a86a20f9469cfc6c.
var legacyMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// Tensor describes one tensor of a checkpoint.
type Tensor struct {
	Name  string
	DType safetensors.DType
	Shape []int64
	// Storage is the zip entry of its storage; Offset its first element
	// there (in elements).
	Storage string
	Offset  int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// File is an open checkpoint.
type File struct {
	Path    string
	Tensors []*Tensor // in the pickle's order
	byName  map[string]*Tensor
	// storages maps a storage key to its bytes (a view of data).
	storages map[string][]byte
	unmap    func() error
	closed   bool
}

// Lookup returns the named tensor's description.
func (f *File) Lookup(name string) (*Tensor, bool) {
	t, ok := f.byName[name]
	return t, ok
}

// Open maps (or reads) a checkpoint and decodes its state dict.
func Open(p string) (*File, error) {
	data, unmap, err := mmap.Load(p)
	if err != nil {
		return nil, fmt.Errorf("torchbin: %w", err)
	}
	f, err := Parse(p, data)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Parse decodes a checkpoint held in memory; name is used in errors. The
// returned File's tensors are views of data.
func Parse(name string, data []byte) (*File, error) {
	if !bytes.HasPrefix(data, []byte("PK\x03\x04")) {
		if bytes.HasPrefix(data, legacyMagic) {
			return nil, fmt.Errorf("torchbin: %s is in the legacy (pre-1.6, non-zip) torch.save format, which is not supported; re-save it with torch ≥ 1.6 or convert it to safetensors", name)
		}
		if bytes.HasPrefix(data, []byte("PK")) {
			return nil, fmt.Errorf("torchbin: %s: not a torch.save zip archive (no local file header at the start)", name)
		}
		return nil, fmt.Errorf("torchbin: %s is not a torch.save zip archive (nor the legacy pickle format)", name)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("torchbin: %s: bad zip archive (truncated?): %v", name, err)
	}
	// The entries share one top folder; data.pkl is in it.
	var prefix string
	var pkl *zip.File
	for _, e := range zr.File {
		if strings.HasSuffix(e.Name, "/data.pkl") && strings.Count(e.Name, "/") == 1 {
			if pkl != nil {
				return nil, fmt.Errorf("torchbin: %s: two data.pkl entries (%s, %s)", name, pkl.Name, e.Name)
			}
			pkl = e
			prefix = strings.TrimSuffix(e.Name, "data.pkl")
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("torchbin: %s: the zip archive has no <prefix>/data.pkl; not a torch.save checkpoint", name)
	}
	entries := map[string]*zip.File{}
	for _, e := range zr.File {
		if !strings.HasPrefix(e.Name, prefix) {
			return nil, fmt.Errorf("torchbin: %s: entry %s is outside the archive's folder %s", name, e.Name, prefix)
		}
		entries[strings.TrimPrefix(e.Name, prefix)] = e
	}
	if bo, ok := entries["byteorder"]; ok {
		b, err := readSmall(bo, 16)
		if err != nil {
			return nil, fmt.Errorf("torchbin: %s: byteorder: %v", name, err)
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, fmt.Errorf("torchbin: %s: byteorder %q; only little-endian checkpoints are supported", name, s)
		}
	}
	if pkl.UncompressedSize64 > MaxPickleSize {
		return nil, fmt.Errorf("torchbin: %s: data.pkl is %d bytes, over the %d-byte limit", name, pkl.UncompressedSize64, MaxPickleSize)
	}
	pb, err := readSmall(pkl, MaxPickleSize)
	if err != nil {
		return nil, fmt.Errorf("torchbin: %s: %s: %v", name, pkl.Name, err)
	}
	root, err := unpickle(name+": "+pkl.Name, pb)
	if err != nil {
		return nil, err
	}
	dict, ok := root.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("torchbin: %s: the pickle holds a %s, not a state dict", name, typeName(root))
	}
	f := &File{Path: name, byName: map[string]*Tensor{}, storages: map[string][]byte{}, unmap: func() error { return nil }}
	for i, k := range dict.keys {
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("torchbin: %s: state dict key %v is a %s, not a string", name, k, typeName(k))
		}
		tr, ok := dict.vals[i].(*tensorRef)
		if !ok {
			return nil, fmt.Errorf("torchbin: %s: state dict entry %q is a %s, not a tensor", name, key, typeName(dict.vals[i]))
		}
		if _, dup := f.byName[key]; dup {
			return nil, fmt.Errorf("torchbin: %s: tensor %q appears twice", name, key)
		}
		t, err := f.tensor(name, key, tr, entries, data)
		if err != nil {
			return nil, err
		}
		f.Tensors = append(f.Tensors, t)
		f.byName[key] = t
	}
	return f, nil
}

func readSmall(e *zip.File, limit int64) ([]byte, error) {
	r, err := e.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("over the %d-byte limit", limit)
	}
	return b, nil
}

// tensor checks a rebuilt tensor against its storage entry.
func (f *File) tensor(name, key string, tr *tensorRef, entries map[string]*zip.File, data []byte) (*Tensor, error) {
	st := tr.st
	sk := "data/" + st.key
	if _, ok := f.storages[st.key]; !ok {
		e, ok := entries[sk]
		if !ok {
			return nil, fmt.Errorf("torchbin: %s: tensor %q: storage entry %s is missing from the archive", name, key, sk)
		}
		if e.Method != zip.Store || e.CompressedSize64 != e.UncompressedSize64 {
			return nil, fmt.Errorf("torchbin: %s: tensor %q: storage entry %s is compressed; torch.save stores storages uncompressed", name, key, sk)
		}
		hi, want := bits.Mul64(uint64(st.numel), uint64(st.dtype.size))
		if hi != 0 || want != e.UncompressedSize64 {
			return nil, fmt.Errorf("torchbin: %s: tensor %q: storage %s holds %d bytes, but %d elements of %s need %d", name, key, sk, e.UncompressedSize64, st.numel, st.dtype.name, uint64(st.numel)*uint64(st.dtype.size))
		}
		off, err := e.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("torchbin: %s: tensor %q: storage %s: %v", name, key, sk, err)
		}
		if off < 0 || uint64(off) > uint64(len(data)) || want > uint64(len(data))-uint64(off) {
			return nil, fmt.Errorf("torchbin: %s: tensor %q: storage %s runs past the end of the file (truncated?)", name, key, sk)
		}
		f.storages[st.key] = data[off : off+int64(want)]
	} else if int64(len(f.storages[st.key])) != st.numel*st.dtype.size {
		return nil, fmt.Errorf("torchbin: %s: tensor %q: storage %s is referenced with two sizes", name, key, sk)
	}
	// Contiguity: the stride of each dimension of size > 1 must be the
	// product of the later sizes.
	n := uint64(1)
	for i := len(tr.size) - 1; i >= 0; i-- {
		s := tr.size[i]
		if s < 0 {
			return nil, fmt.Errorf("torchbin: %s: tensor %q has a negative size %v", name, key, tr.size)
		}
		if s > 1 && uint64(tr.stride[i]) != n || tr.stride[i] < 0 {
			return nil, fmt.Errorf("torchbin: %s: tensor %q is not contiguous (size %v, stride %v); save it with .contiguous()", name, key, tr.size, tr.stride)
		}
		hi, lo := bits.Mul64(n, uint64(s))
		if hi != 0 || lo > math.MaxInt64/8 {
			return nil, fmt.Errorf("torchbin: %s: tensor %q: size %v overflows", name, key, tr.size)
		}
		n = lo
	}
	if uint64(tr.offset) > uint64(st.numel) || n > uint64(st.numel-tr.offset) {
		return nil, fmt.Errorf("torchbin: %s: tensor %q: elements [%d, %d) run past its storage %s of %d elements", name, key, tr.offset, uint64(tr.offset)+n, sk, st.numel)
	}
	return &Tensor{Name: key, DType: safetensors.DType(st.dtype.dtype), Shape: tr.size, Storage: path.Join("data", st.key), Offset: tr.offset}, nil
}

// Bytes returns a tensor's raw little-endian bytes (a view of the file).
func (f *File) Bytes(name string) ([]byte, *Tensor, error) {
	if f.closed {
		return nil, nil, fmt.Errorf("torchbin: %s: file is closed", f.Path)
	}
	t, ok := f.byName[name]
	if !ok {
		return nil, nil, fmt.Errorf("torchbin: %s: no tensor %q", f.Path, name)
	}
	es := t.DType.Size()
	b := f.storages[strings.TrimPrefix(t.Storage, "data/")]
	return b[t.Offset*es : (t.Offset+t.NumElements())*es], t, nil
}

// Float32 returns a freshly allocated float32 copy of a tensor, widening F16
// and BF16.
func (f *File) Float32(name string) ([]float32, *Tensor, error) {
	b, t, err := f.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	out, err := safetensors.ToFloat32(b, t.DType)
	if err != nil {
		return nil, nil, fmt.Errorf("torchbin: %s: tensor %q: %w", f.Path, name, err)
	}
	return out, t, nil
}

// Close unmaps the file. Slices returned by Bytes become invalid.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.storages = nil
	return f.unmap()
}
