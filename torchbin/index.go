package torchbin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	st, err := os.Stat(indexPath)
	if err != nil {
		return nil, fmt.Errorf("torchbin: %w", err)
	}
	if st.Size() > MaxIndexSize {
		return nil, fmt.Errorf("torchbin: %s is %d bytes, over the %d-byte limit for an index", indexPath, st.Size(), MaxIndexSize)
	}
	b, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("torchbin: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("torchbin: %s: %v", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("torchbin: %s: weight_map is missing or empty", indexPath)
	}
	dir := filepath.Dir(indexPath)
	shardNames := map[string]bool{}
	for t, s := range idx.WeightMap {
		if s == "" || s != filepath.Base(s) || strings.Contains(s, "..") || strings.ContainsAny(s, `/\`) {
			return nil, fmt.Errorf("torchbin: %s: weight_map: tensor %q names a bad shard %q", indexPath, t, s)
		}
		shardNames[s] = true
	}
	var order []string
	for s := range shardNames {
		order = append(order, s)
	}
	sort.Strings(order)
	var files []*File
	byShard := map[string]*File{}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, s := range order {
		f, err := Open(filepath.Join(dir, s))
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w (shard of %s)", err, indexPath)
		}
		files = append(files, f)
		byShard[s] = f
	}
	for t, s := range idx.WeightMap {
		if _, ok := byShard[s].Lookup(t); !ok {
			closeAll()
			return nil, fmt.Errorf("torchbin: %s: weight_map puts tensor %q in %s, which does not hold it", indexPath, t, s)
		}
	}
	for s, f := range byShard {
		for _, t := range f.Tensors {
			if idx.WeightMap[t.Name] != s {
				closeAll()
				return nil, fmt.Errorf("torchbin: %s: tensor %q of shard %s is not in the weight_map (or mapped to %q)", indexPath, t.Name, s, idx.WeightMap[t.Name])
			}
		}
	}
	return newSet(dir, files)
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
func (s *Set) Close() error {
	var first error
	for _, f := range s.Files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
