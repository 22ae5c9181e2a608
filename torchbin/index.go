package torchbin

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/darwinlm/darwinlm-go/internal/shards"
)

// SingleName and IndexName are the file names Hugging Face gives a PyTorch
// checkpoint and the index of a sharded one.
const (
	SingleName = "pytorch_model.bin"
	IndexName  = "pytorch_model.bin.index.json"
)

// MaxIndexSize bounds an index file.
const MaxIndexSize = 64 << 20

// Set is one checkpoint: a single pytorch_model.bin or the shards named by
// pytorch_model.bin.index.json.
type Set struct {
	Dir    string
	Files  []*File
	byName map[string]*File
}

// HasCheckpoint reports whether dir holds pytorch_model.bin or its index.
func HasCheckpoint(dir string) bool {
	for _, n := range []string{SingleName, IndexName} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// OpenDir opens dir/pytorch_model.bin, or, when it is absent, the shards of
// dir/pytorch_model.bin.index.json.
func OpenDir(dir string) (*Set, error) {
	single := filepath.Join(dir, SingleName)
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return newSet(dir, []*File{f})
	}
	idx := filepath.Join(dir, IndexName)
	if _, err := os.Stat(idx); err != nil {
		return nil, fmt.Errorf("torchbin: %s holds neither %s nor %s", dir, SingleName, IndexName)
	}
	return OpenIndex(idx)
}

// OpenIndex opens the shards listed by an index file and checks that every
// tensor of the weight_map is in the shard it names, and every shard tensor
// is listed.
func OpenIndex(indexPath string) (*Set, error) {
	files, err := shards.Open(indexPath, shards.Format[*File]{
		Prefix: "torchbin", MaxSize: MaxIndexSize, Open: Open,
		Names: func(f *File) []string {
			n := make([]string, len(f.Tensors))
			for i, t := range f.Tensors {
				n[i] = t.Name
			}
			return n
		},
	})
	if err != nil {
		return nil, err
	}
	return newSet(filepath.Dir(indexPath), files)
}

func newSet(dir string, files []*File) (*Set, error) {
	s := &Set{Dir: dir, Files: files, byName: map[string]*File{}}
	for _, f := range files {
		for _, t := range f.Tensors {
			s.byName[t.Name] = f
		}
	}
	return s, nil
}

// Lookup returns the tensor's description and the file that holds it.
func (s *Set) Lookup(name string) (*Tensor, *File, bool) {
	f, ok := s.byName[name]
	if !ok {
		return nil, nil, false
	}
	t, _ := f.Lookup(name)
	return t, f, true
}

// Close closes every file.
func (s *Set) Close() error { return shards.Close(s.Files) }
