package safetensors

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/darwinlm/darwinlm-go/internal/shards"
)

// IndexName is the file name of a sharded checkpoint's index.
const IndexName = "model.safetensors.index.json"

// Set is one checkpoint: a single model.safetensors or the shards named by
// model.safetensors.index.json.
type Set struct {
	Dir    string
	Files  []*File
	byName map[string]*File
	names  []string
}

// OpenDir opens dir/model.safetensors, or, when it is absent, the shards of
// dir/model.safetensors.index.json.
func OpenDir(dir string) (*Set, error) {
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return newSet(dir, []*File{f}), nil
	}
	idx := filepath.Join(dir, IndexName)
	if _, err := os.Stat(idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s holds neither model.safetensors nor %s", dir, IndexName)
	}
	return OpenIndex(idx)
}

// OpenIndex opens the shards listed by an index file and checks that every
// tensor of the weight_map is in the shard it names, and every shard tensor
// is listed.
func OpenIndex(indexPath string) (*Set, error) {
	files, err := shards.Open(indexPath, shards.Format[*File]{
		Prefix: "safetensors", MaxSize: 0, Open: Open,
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
	return newSet(filepath.Dir(indexPath), files), nil
}

func newSet(dir string, files []*File) *Set {
	s := &Set{Dir: dir, Files: files, byName: map[string]*File{}}
	for _, f := range files {
		for _, t := range f.Tensors {
			s.byName[t.Name] = f
			s.names = append(s.names, t.Name)
		}
	}
	return s
}

// Names lists the tensors (file order, shards in name order).
func (s *Set) Names() []string { return s.names }

// Lookup returns the tensor's description and the file that holds it.
func (s *Set) Lookup(name string) (*TensorInfo, *File, bool) {
	f, ok := s.byName[name]
	if !ok {
		return nil, nil, false
	}
	t, _ := f.Lookup(name)
	return t, f, true
}

// Metadata returns the __metadata__ value for key from any shard.
func (s *Set) Metadata(key string) (string, bool) {
	for _, f := range s.Files {
		if v, ok := f.Metadata[key]; ok {
			return v, true
		}
	}
	return "", false
}

// Float32 returns a float32 copy of the named tensor.
func (s *Set) Float32(name string) ([]float32, *TensorInfo, error) {
	f, ok := s.byName[name]
	if !ok {
		where := s.Dir
		if len(s.Files) == 1 {
			where = s.Files[0].Path
		}
		return nil, nil, fmt.Errorf("safetensors: %s: missing tensor %q", where, name)
	}
	return f.Float32(name)
}

// Close closes every file.
func (s *Set) Close() error { return shards.Close(s.Files) }
