package safetensors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	b, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var idx struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %v", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: weight_map is missing or empty", indexPath)
	}
	dir := filepath.Dir(indexPath)
	shardNames := map[string]bool{}
	for t, s := range idx.WeightMap {
		if s == "" || s != filepath.Base(s) || strings.Contains(s, "..") || strings.ContainsAny(s, `/\`) {
			return nil, fmt.Errorf("safetensors: %s: weight_map: tensor %q names a bad shard %q", indexPath, t, s)
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
			return nil, fmt.Errorf("safetensors: %s: weight_map puts tensor %q in %s, which does not hold it", indexPath, t, s)
		}
	}
	for s, f := range byShard {
		for _, t := range f.Tensors {
			if idx.WeightMap[t.Name] != s {
				closeAll()
				return nil, fmt.Errorf("safetensors: %s: tensor %q of shard %s is not in the weight_map (or mapped to %q)", indexPath, t.Name, s, idx.WeightMap[t.Name])
			}
		}
	}
	return newSet(dir, files), nil
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
func (s *Set) Close() error {
	var first error
	for _, f := range s.Files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
