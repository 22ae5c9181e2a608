// Package shards reads the index of a sharded Hugging Face checkpoint
// (model.safetensors.index.json, pytorch_model.bin.index.json): the same
// weight_map for every weight format, so the checks live in one place.
package shards

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Format is what Open needs of a weight format. Prefix starts its errors
// ("safetensors", "torchbin").
type Format[F io.Closer] struct {
	Prefix  string
	MaxSize int64 // largest index file accepted; 0 = no limit
	Open    func(path string) (F, error)
	Names   func(F) []string // the tensors a shard holds
}

// Open reads the index at indexPath, opens every shard it names (sorted by
// name) and checks that the weight_map and the shards agree tensor for
// tensor: every mapped tensor is in its shard and every shard tensor is
// mapped to it. Shard names must be plain file names beside the index.
func Open[F io.Closer](indexPath string, ff Format[F]) ([]F, error) {
	p := ff.Prefix
	if ff.MaxSize > 0 {
		st, err := os.Stat(indexPath)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if st.Size() > ff.MaxSize {
			return nil, fmt.Errorf("%s: %s is %d bytes, over the %d-byte limit for an index", p, indexPath, st.Size(), ff.MaxSize)
		}
	}
	b, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %s: %v", p, indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: %s: weight_map is missing or empty", p, indexPath)
	}
	shardNames := map[string]bool{}
	for t, s := range idx.WeightMap {
		if s == "" || s != filepath.Base(s) || strings.Contains(s, "..") || strings.ContainsAny(s, `/\`) {
			return nil, fmt.Errorf("%s: %s: weight_map: tensor %q names a bad shard %q", p, indexPath, t, s)
		}
		shardNames[s] = true
	}
	order := make([]string, 0, len(shardNames))
	for s := range shardNames {
		order = append(order, s)
	}
	sort.Strings(order)
	dir := filepath.Dir(indexPath)
	var files []F
	held := map[string]map[string]bool{} // shard -> its tensors
	for _, s := range order {
		f, err := ff.Open(filepath.Join(dir, s))
		if err != nil {
			Close(files)
			return nil, fmt.Errorf("%w (shard of %s)", err, indexPath)
		}
		files = append(files, f)
		names := ff.Names(f)
		held[s] = make(map[string]bool, len(names))
		for _, n := range names {
			held[s][n] = true
		}
	}
	for t, s := range idx.WeightMap {
		if !held[s][t] {
			Close(files)
			return nil, fmt.Errorf("%s: %s: weight_map puts tensor %q in %s, which does not hold it", p, indexPath, t, s)
		}
	}
	for _, s := range order {
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range held[s] {
				if !yield(n) {
					return
				}
			}
		})
		for _, n := range names {
			if idx.WeightMap[n] != s {
				Close(files)
				return nil, fmt.Errorf("%s: %s: tensor %q of shard %s is not in the weight_map (or mapped to %q)", p, indexPath, n, s, idx.WeightMap[n])
			}
		}
	}
	return files, nil
}

// Close closes every file and returns the first error.
func Close[F io.Closer](files []F) error {
	var first error
	for _, f := range files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
