package prune

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/safetensors"
)

// ManifestName is the database's manifest file.
const ManifestName = "database.json"

// FormatVersion is the manifest version this code writes and reads.
const FormatVersion = 1

// Manifest is database.json.
type Manifest struct {
	Version int    `json:"version"`
	Model   string `json:"model"`
	// ModelHash is ModelHash of the dense model the database was built from.
	ModelHash   string    `json:"model_hash"`
	Arch        ArchInfo  `json:"arch"`
	TotalParams int64     `json:"total_params"` // of the dense model
	Calibration CalibInfo `json:"calibration"`
	RelDamp     float64   `json:"rel_damp"`
	// NumLevels is the number of levels of every module (K+1 for --levels K).
	NumLevels int `json:"num_levels"`
	// Modules in model order: layer 0 o_proj, layer 0 down_proj, layer 1 ...
	Modules []ModuleInfo `json:"modules"`
}

// ArchInfo is the dense architecture the database belongs to.
type ArchInfo struct {
	Hidden       int `json:"hidden_size"`
	Layers       int `json:"num_hidden_layers"`
	Heads        int `json:"num_attention_heads"`
	KVHeads      int `json:"num_key_value_heads"`
	HeadDim      int `json:"head_dim"`
	Intermediate int `json:"intermediate_size"`
}

// CalibInfo records the calibration data.
type CalibInfo struct {
	Spec      string `json:"spec"`
	Sampler   string `json:"sampler"`
	Seed      int64  `json:"seed"`
	SeqLen    int    `json:"seq_len"`
	Tokens    int    `json:"tokens"`
	Sequences int    `json:"sequences"`
}

// ModuleInfo is one prunable module and its levels.
type ModuleInfo struct {
	Name  string `json:"name"`
	Layer int    `json:"layer"`
	// Unit is "head" (o_proj, groups of head_dim input columns) or "neuron"
	// (down_proj, one input column).
	Unit  string `json:"unit"`
	Units int    `json:"units"`
	// RemovalOrder lists units in the order the greedy pass removed them.
	RemovalOrder []int       `json:"removal_order"`
	Levels       []LevelInfo `json:"levels"`
}

// LevelInfo is one level of a module.
type LevelInfo struct {
	Level   int     `json:"level"`
	Removed int     `json:"removed"`
	Error   float64 `json:"error"`
	// Params counts the module's parameters left at this level: for o_proj
	// the attention's q/k/v/o weights and biases, for down_proj the MLP's
	// gate/up/down weights and biases.
	Params int64 `json:"params"`
	// File holds the compensated weight [hidden × kept columns] (tensor
	// "weight", F32), relative to the database folder; empty when nothing is
	// left or at level 0 (the dense weight is the model's own).
	File   string `json:"file,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// Database is an opened pruning database. Level weights are loaded lazily
// and cached in memory; it is safe for concurrent use.
type Database struct {
	Dir string
	Man Manifest

	// cfgIndex maps LevelConfig order to Man.Modules indices.
	cfgIndex []int
	byName   map[string]int // module name -> LevelConfig index

	mu    sync.Mutex
	cache map[[2]int][]float32
}

// OpenDatabase reads and validates dir/database.json and checks that every
// level file is present with its recorded size. Weights are not read.
func OpenDatabase(dir string) (*Database, error) {
	path := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("database %s: no %s (not a pruning database)", dir, ManifestName)
		}
		return nil, fmt.Errorf("database: %w", err)
	}
	var man Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		return nil, fmt.Errorf("database %s: corrupt manifest: %v", path, err)
	}
	if man.Version != FormatVersion {
		return nil, fmt.Errorf("database %s: version %d, this program reads version %d", path, man.Version, FormatVersion)
	}
	db := &Database{Dir: dir, Man: man, cache: map[[2]int][]float32{}, byName: map[string]int{}}
	if err := db.validate(); err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return db, nil
}

func (db *Database) validate() error {
	m := &db.Man
	a := m.Arch
	if a.Layers <= 0 || a.Hidden <= 0 || a.HeadDim <= 0 || m.NumLevels < 1 {
		return fmt.Errorf("bad arch %+v or num_levels %d", a, m.NumLevels)
	}
	if len(m.Modules) != 2*a.Layers {
		return fmt.Errorf("%d modules, want %d (o_proj and down_proj of %d layers)", len(m.Modules), 2*a.Layers, a.Layers)
	}
	// LevelConfig order: all down_proj, then all o_proj.
	db.cfgIndex = make([]int, 2*a.Layers)
	for i, mod := range m.Modules {
		layer, kind, ok := parseModuleName(mod.Name)
		if !ok || layer != i/2 || (kind == "attn") != (i%2 == 0) || layer != mod.Layer {
			return fmt.Errorf("module %d is %q (layer %d), want %s", i, mod.Name, mod.Layer, map[bool]string{true: attnName(i / 2), false: mlpName(i / 2)}[i%2 == 0])
		}
		unit := map[string]string{"attn": "head", "mlp": "neuron"}[kind]
		if mod.Unit != unit {
			return fmt.Errorf("module %s: unit %q, want %q", mod.Name, mod.Unit, unit)
		}
		if mod.Units <= 0 {
			return fmt.Errorf("module %s: %d units", mod.Name, mod.Units)
		}
		if len(mod.Levels) != m.NumLevels {
			return fmt.Errorf("module %s has %d levels, num_levels is %d", mod.Name, len(mod.Levels), m.NumLevels)
		}
		seen := make([]bool, mod.Units)
		for _, u := range mod.RemovalOrder {
			if u < 0 || u >= mod.Units || seen[u] {
				return fmt.Errorf("module %s: removal_order has a bad or repeated unit %d", mod.Name, u)
			}
			seen[u] = true
		}
		prev := -1
		for l, lv := range mod.Levels {
			if lv.Level != l || lv.Removed < max(prev, 0) || lv.Removed > len(mod.RemovalOrder) || (l == 0 && lv.Removed != 0) {
				return fmt.Errorf("module %s level %d: bad level/removed (%d/%d, removal_order has %d units)", mod.Name, l, lv.Level, lv.Removed, len(mod.RemovalOrder))
			}
			prev = lv.Removed
			needFile := l > 0 && lv.Removed < mod.Units
			if needFile != (lv.File != "") {
				return fmt.Errorf("module %s level %d: file %q does not fit %d of %d units removed", mod.Name, l, lv.File, lv.Removed, mod.Units)
			}
			if lv.File != "" {
				if filepath.IsAbs(lv.File) || !filepath.IsLocal(lv.File) {
					return fmt.Errorf("module %s level %d: file %q is not inside the database", mod.Name, l, lv.File)
				}
				st, err := os.Stat(filepath.Join(db.Dir, lv.File))
				if err != nil {
					return fmt.Errorf("module %s level %d: %v", mod.Name, l, err)
				}
				if st.Size() != lv.Bytes {
					return fmt.Errorf("module %s level %d: %s has %d bytes, the manifest says %d (truncated or corrupt)", mod.Name, l, lv.File, st.Size(), lv.Bytes)
				}
			}
		}
		ci := i / 2
		if i%2 == 0 {
			ci += a.Layers
		}
		db.cfgIndex[ci] = i
		db.byName[mod.Name] = ci
	}
	return nil
}

// NumModules is the number of prunable modules (2 per layer).
func (db *Database) NumModules() int { return len(db.cfgIndex) }

// Module returns the manifest entry of module i (LevelConfig order).
func (db *Database) Module(i int) *ModuleInfo { return &db.Man.Modules[db.cfgIndex[i]] }

// Template is the configuration with every module at level 0, in file order.
func (db *Database) Template() LevelConfig {
	c := LevelConfig{Names: make([]string, len(db.cfgIndex)), Levels: make([]int, len(db.cfgIndex))}
	for i := range db.cfgIndex {
		c.Names[i] = db.Module(i).Name
	}
	return c
}

// NumLevels is the number of levels of module i (LevelConfig order).
func (db *Database) NumLevels(module int) int {
	if module < 0 || module >= len(db.cfgIndex) {
		return 0
	}
	return len(db.Module(module).Levels)
}

// HasLevel reports whether module i has the given level.
func (db *Database) HasLevel(module, level int) bool {
	return level >= 0 && level < db.NumLevels(module)
}

// Check validates cfg against the database: every module named exactly
// once, no unknown module or layer, every level present. It returns the
// levels in LevelConfig (template) order.
func (db *Database) Check(cfg LevelConfig) ([]int, error) {
	if len(cfg.Names) != len(cfg.Levels) {
		return nil, fmt.Errorf("level config: %d names but %d levels", len(cfg.Names), len(cfg.Levels))
	}
	levels := make([]int, len(db.cfgIndex))
	set := make([]bool, len(db.cfgIndex))
	for i, n := range cfg.Names {
		ci, ok := db.byName[n]
		if !ok {
			if layer, kind, parsed := parseModuleName(n); parsed && kind != "" {
				return nil, fmt.Errorf("level config: %s names layer %d, the model has layers 0..%d", n, layer, db.Man.Arch.Layers-1)
			}
			return nil, fmt.Errorf("level config: unknown module %q (want model.layers.N.mlp.down_proj or model.layers.N.self_attn.o_proj)", n)
		}
		if set[ci] {
			return nil, fmt.Errorf("level config: module %s is listed twice", n)
		}
		set[ci] = true
		if !db.HasLevel(ci, cfg.Levels[i]) {
			return nil, fmt.Errorf("level config: %s: level %d does not exist (the database has levels 0..%d)", n, cfg.Levels[i], db.NumLevels(ci)-1)
		}
		levels[ci] = cfg.Levels[i]
	}
	for ci, ok := range set {
		if !ok {
			return nil, fmt.Errorf("level config: module %s is missing", db.Module(ci).Name)
		}
	}
	return levels, nil
}

// Params is the parameter count of the model cfg stitches, without building
// it.
func (db *Database) Params(cfg LevelConfig) (int64, error) {
	levels, err := db.Check(cfg)
	if err != nil {
		return 0, err
	}
	return db.paramsOf(levels), nil
}

func (db *Database) paramsOf(levels []int) int64 {
	n := db.Man.TotalParams
	for ci, l := range levels {
		lv := db.Module(ci).Levels
		n -= lv[0].Params - lv[l].Params
	}
	return n
}

// CheckModel verifies that m is the dense model the database was built from.
func (db *Database) CheckModel(m *model.Model) error {
	c := m.Cfg
	a := db.Man.Arch
	if c.Hidden != a.Hidden || c.Layers != a.Layers || c.Heads != a.Heads || c.KVHeads != a.KVHeads || c.HeadDim != a.HeadDim || c.Intermediate != a.Intermediate {
		return fmt.Errorf("database %s was built for another architecture (%+v) than this model", db.Dir, a)
	}
	if h := ModelHash(m); h != db.Man.ModelHash {
		return fmt.Errorf("database %s was built from another model (weights hash %s, this model %s; built from %s)", db.Dir, short(db.Man.ModelHash), short(h), db.Man.Model)
	}
	return nil
}

func short(h string) string {
	if len(h) > 19 {
		return h[:19]
	}
	return h
}

// kept returns the kept units of module ci at a level, ascending.
func (db *Database) kept(ci, level int) []int {
	mod := db.Module(ci)
	removed := make([]bool, mod.Units)
	for _, u := range mod.RemovalOrder[:mod.Levels[level].Removed] {
		removed[u] = true
	}
	if mod.Levels[level].Removed == mod.Units {
		return []int{}
	}
	out := make([]int, 0, mod.Units)
	for u, r := range removed {
		if !r {
			out = append(out, u)
		}
	}
	return out
}

// LevelWeight returns the compensated weight of module ci at a level,
// [hidden × kept units·group] (nil at level 0, empty when all is removed),
// and the kept units. Loaded once, then served from memory; callers must not
// modify it.
func (db *Database) LevelWeight(ci, level int) ([]float32, []int, error) {
	if !db.HasLevel(ci, level) {
		return nil, nil, fmt.Errorf("database: module %d has no level %d", ci, level)
	}
	kept := db.kept(ci, level)
	if level == 0 {
		return nil, kept, nil
	}
	mod := db.Module(ci)
	lv := mod.Levels[level]
	if lv.File == "" {
		return []float32{}, kept, nil
	}
	key := [2]int{ci, level}
	db.mu.Lock()
	w, ok := db.cache[key]
	db.mu.Unlock()
	if ok {
		return w, kept, nil
	}
	w, err := db.readLevel(mod, lv, len(kept))
	if err != nil {
		return nil, nil, err
	}
	db.mu.Lock()
	db.cache[key] = w
	db.mu.Unlock()
	return w, kept, nil
}

func (db *Database) readLevel(mod *ModuleInfo, lv LevelInfo, keptUnits int) ([]float32, error) {
	path := filepath.Join(db.Dir, lv.File)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != lv.SHA256 {
		return nil, fmt.Errorf("database: %s is corrupt (sha256 differs from the manifest)", path)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	defer f.Close()
	w, info, err := f.Float32("weight")
	if err != nil {
		return nil, fmt.Errorf("database: %s: %w", path, err)
	}
	group := 1
	if mod.Unit == "head" {
		group = db.Man.Arch.HeadDim
	}
	want := []int64{int64(db.Man.Arch.Hidden), int64(keptUnits * group)}
	if len(info.Shape) != 2 || info.Shape[0] != want[0] || info.Shape[1] != want[1] {
		return nil, fmt.Errorf("database: %s: weight has shape %v, want %v", path, info.Shape, want)
	}
	return append([]float32(nil), w...), nil
}

// ModelHash is a SHA-256 of the model's architecture and every weight, in
// a fixed order ("sha256:" + hex).
func ModelHash(m *model.Model) string {
	h := sha256.New()
	c := m.Cfg
	hdr := fmt.Sprintf("%s|%d|%d|%d|%d|%d|%d|%d|%v|%v|%g|%g", c.Arch, c.Hidden, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.Intermediate, c.Vocab, c.Tied, c.Rope, c.RopeTheta, c.RMSEps)
	io.WriteString(h, hdr)
	buf := make([]byte, 0, 1<<16)
	put := func(name string, s []float32) {
		var lb [8]byte
		io.WriteString(h, name)
		binary.LittleEndian.PutUint64(lb[:], uint64(len(s)))
		h.Write(lb[:])
		for len(s) > 0 {
			n := min(len(s), cap(buf)/4)
			buf = buf[:4*n]
			for i, v := range s[:n] {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			h.Write(buf)
			s = s[n:]
		}
	}
	put("embed", m.Embed)
	for i := range m.Layers {
		l := &m.Layers[i]
		io.WriteString(h, fmt.Sprintf("layer%d:%d,%d,%d", i, l.Heads, l.KVHeads, l.Inter))
		for j, s := range [][]float32{l.AttnNorm, l.Wq, l.Wk, l.Wv, l.Bq, l.Bk, l.Bv, l.Wo, l.Bo, l.MLPNorm, l.Wgate, l.Wup, l.Wdown, l.Bgate, l.Bup, l.Bdown} {
			put(fmt.Sprint(j), s)
		}
	}
	put("norm", m.Norm)
	if !c.Tied {
		put("lm_head", m.LMHead)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// sortedCopy returns an ascending copy.
func sortedCopy(s []int) []int {
	out := append([]int(nil), s...)
	sort.Ints(out)
	return out
}
