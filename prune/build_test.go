package prune

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

func cpu(t testing.TB) backend.Backend {
	be, err := backend.Get("cpu")
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func randomSeqs(seed uint64, n, length, vocab int) [][]int {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([][]int, n)
	for i := range out {
		l := length - i%3
		out[i] = make([]int, l)
		for j := range out[i] {
			out[i][j] = r.IntN(vocab)
		}
	}
	return out
}

func buildRandomDB(t *testing.T, m *model.Model, opts BuildOptions) (*Database, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	calib := randomSeqs(11, 12, 16, m.Cfg.Vocab)
	opts.ModelID = "random"
	if err := Build(context.Background(), cpu(t), m, calib, opts, dir); err != nil {
		t.Fatal(err)
	}
	db, err := OpenDatabase(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db, dir
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// Building, opening and stitching a random MHA model: parameter counts of
// the manifest equal the stitched models', level 0 is the dense model bit
// for bit, the zeroed format computes the same function as the shrunk one,
// errors grow with the level.
func TestBuildStitchRandom(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  modeltest.Cfg
	}{
		{"mha-mlpbias", modeltest.Cfg{Heads: 4, KV: 4, HD: 8, Hidden: 32, Inter: 40, Vocab: 60, Layers: 2, MLPBias: true}},
		{"gqa-qkvbias", modeltest.Cfg{Heads: 8, KV: 4, HD: 4, Hidden: 32, Inter: 40, Vocab: 60, Layers: 2, Bias: true}},
		{"gqa-1kv", modeltest.Cfg{Heads: 4, KV: 1, HD: 8, Hidden: 32, Inter: 40, Vocab: 60, Layers: 2, Interleaved: true}},
	} {
		t.Run(tc.name, func(t *testing.T) { testBuildStitch(t, tc.cfg) })
	}
}

func testBuildStitch(t *testing.T, rc modeltest.Cfg) {
	be := cpu(t)
	m := modeltest.Random(rc, false, 7)
	db, _ := buildRandomDB(t, m, BuildOptions{Levels: 4})
	if err := db.CheckModel(m); err != nil {
		t.Fatal(err)
	}
	if db.NumModules() != 4 || db.NumLevels(0) != 5 || !db.HasLevel(3, 4) || db.HasLevel(3, 5) {
		t.Fatalf("modules %d levels %d", db.NumModules(), db.NumLevels(0))
	}
	tpl := db.Template()
	wantNames := []string{"model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj", "model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"}
	if strings.Join(tpl.Names, ",") != strings.Join(wantNames, ",") {
		t.Fatalf("template %v", tpl.Names)
	}
	seqs := randomSeqs(4, 3, 10, 60)
	dense := m.Forward(be, seqs)
	ragged := false
	for lv := 0; lv <= 4; lv++ {
		cfg := Uniform(db, lv)
		p, err := db.Params(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sm, err := db.Stitch(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := sm.Validate("stitched"); err != nil {
			t.Fatal(err)
		}
		for _, l := range sm.Layers {
			ragged = ragged || l.KVMap != nil
		}
		if got := sm.NumParams(); got != p {
			t.Errorf("level %d: stitched model has %d parameters, Params says %d", lv, got, p)
		}
		out := sm.Forward(be, seqs)
		if lv == 0 {
			for i := range out {
				if out[i] != dense[i] {
					t.Fatalf("level 0 differs from the dense model at %d", i)
				}
			}
		}
		zm, err := db.StitchZeroed(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if zm.NumParams() != m.NumParams() {
			t.Errorf("zeroed model changed size")
		}
		if d := maxAbsDiff(zm.Forward(be, seqs), out); d > 1e-4 {
			t.Errorf("level %d: zeroed and shrunk logits differ by %g", lv, d)
		}
	}
	if rc.KV < rc.Heads && rc.KV > 1 && !ragged {
		t.Errorf("no stitched layer had a ragged K/V map; the GQA case is not covered")
	}
	for ci := 0; ci < db.NumModules(); ci++ {
		lv := db.Module(ci).Levels
		for l := 1; l < len(lv); l++ {
			if lv[l].Error < lv[l-1].Error || lv[l].Params > lv[l-1].Params {
				t.Errorf("%s: level %d error %g params %d after %g %d", db.Module(ci).Name, l, lv[l].Error, lv[l].Params, lv[l-1].Error, lv[l-1].Params)
			}
		}
	}
	// Another model is refused.
	m2 := modeltest.Random(rc, false, 8)
	if err := db.CheckModel(m2); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("hash mismatch not detected: %v", err)
	}
}

func TestDatabaseBadInput(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 4, KV: 4, HD: 8, Hidden: 32, Inter: 40, Vocab: 60, Layers: 2}, false, 7)
	db, dir := buildRandomDB(t, m, BuildOptions{Levels: 4})
	be := cpu(t)
	calib := randomSeqs(11, 4, 16, 60)

	// Refuses to overwrite without --force; replaces with it.
	if err := Build(context.Background(), be, m, calib, BuildOptions{Levels: 2}, dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwrite without force: %v", err)
	}
	other := filepath.Join(t.TempDir(), "notadb")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "x"), []byte("x"), 0o644)
	if err := Build(context.Background(), be, m, calib, BuildOptions{Levels: 2, Force: true}, other); err == nil {
		t.Errorf("replaced a folder that is not a database")
	}
	// Bad level lists, before any compute.
	for _, o := range []BuildOptions{
		{AttnRemoved: []int{0, 2, 1, 4}},
		{AttnRemoved: []int{0, 2, 5}},
		{MLPRemoved: []int{0, 10, 41}},
		{AttnRemoved: []int{0, 2, 4}, MLPRemoved: []int{0, 40}},
		{Levels: 0},
	} {
		if err := Build(context.Background(), be, m, calib, o, filepath.Join(t.TempDir(), "d")); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}

	// Level configurations.
	good := Uniform(db, 2).String()
	for _, tc := range []struct{ name, text, want string }{
		{"unknown layer", strings.Replace(good, "layers.1.mlp", "layers.7.mlp", 1), "layer 7"},
		{"unknown module", strings.Replace(good, "layers.1.mlp.down_proj", "layers.1.mlp.up_proj", 1), "unknown module"},
		{"level", strings.Replace(good, "layers.0.mlp.down_proj: 2", "layers.0.mlp.down_proj: 9", 1), "level 9"},
		{"missing", good[:strings.LastIndex(good, "\n")], "missing"},
		{"duplicate", good + "\nmodel.layers.0.mlp.down_proj: 1", "twice"},
		{"syntax", good + "\nmodel.layers.0.mlp.down_proj 1", "MODULE: LEVEL"},
		{"negative", strings.Replace(good, ": 2", ": -1", 1), "negative"},
	} {
		cfg, err := ParseLevelConfig(strings.NewReader(tc.text), tc.name)
		if err == nil {
			_, err = db.Params(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// Round trip of the file format.
	p := filepath.Join(t.TempDir(), "cfg.txt")
	if err := Uniform(db, 3).Write(p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLevelConfig(p)
	if err != nil || back.String() != Uniform(db, 3).String() {
		t.Errorf("round trip: %v %q", err, back.String())
	}
	raw, _ := os.ReadFile(p)
	if strings.HasSuffix(string(raw), "\n") || !strings.HasPrefix(string(raw), "model.layers.0.mlp.down_proj: 3\nmodel.layers.1.mlp.down_proj: 3\nmodel.layers.0.self_attn.o_proj: 3") {
		t.Errorf("file format: %q", raw)
	}

	// Truncated and corrupt level files, corrupt manifest.
	lf := filepath.Join(dir, db.Module(0).Levels[2].File)
	b, _ := os.ReadFile(lf)
	os.WriteFile(lf, b[:len(b)-4], 0o644)
	if _, err := OpenDatabase(dir); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated level file: %v", err)
	}
	b[len(b)-1] ^= 0x40
	os.WriteFile(lf, b, 0o644)
	db2, err := OpenDatabase(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db2.Stitch(m, Uniform(db2, 2)); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt level file: %v", err)
	}
	mf := filepath.Join(dir, ManifestName)
	mb, _ := os.ReadFile(mf)
	os.WriteFile(mf, mb[:len(mb)/2], 0o644)
	if _, err := OpenDatabase(dir); err == nil || !strings.Contains(err.Error(), "corrupt manifest") {
		t.Errorf("truncated manifest: %v", err)
	}
}

// DP against brute force over every configuration of a small database.
func TestDPBruteForce(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 4, KV: 4, HD: 8, Hidden: 32, Inter: 40, Vocab: 60, Layers: 2}, false, 9)
	db, _ := buildRandomDB(t, m, BuildOptions{Levels: 4})
	M, L := db.NumModules(), db.NumLevels(0)
	norm := func(ci, l int) float64 {
		lv := db.Module(ci).Levels
		return lv[l].Error / lv[len(lv)-1].Error
	}
	dense := m.NumParams()
	for _, frac := range []float64{0.9, 0.7, 0.55, 0.4} {
		target := int64(frac * float64(dense))
		cfg, err := DP(db, target)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := db.Params(cfg)
		if p > target {
			t.Errorf("frac %g: %d params > target %d", frac, p, target)
		}
		got := 0.0
		for ci, l := range cfg.Levels {
			got += norm(ci, l)
		}
		best := math.Inf(1)
		lv := make([]int, M)
		var rec func(i int)
		rec = func(i int) {
			if i == M {
				c := db.Template()
				copy(c.Levels, lv)
				if q, _ := db.Params(c); q <= target {
					s := 0.0
					for ci, l := range lv {
						s += norm(ci, l)
					}
					best = min(best, s)
				}
				return
			}
			for l := 0; l < L; l++ {
				lv[i] = l
				rec(i + 1)
			}
		}
		rec(0)
		if math.Abs(got-best) > 1e-12 {
			t.Errorf("frac %g: DP objective %g, brute force %g", frac, got, best)
		}
	}
	if _, err := DP(db, 10); err == nil {
		t.Errorf("impossible target accepted")
	}
}

// Spilling layer inputs to a file gives bitwise the database built in
// memory (and two builds are identical: determinism).
func TestBuildSpillIdentical(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 8, KV: 4, HD: 4, Hidden: 32, Inter: 40, Vocab: 60, Layers: 3}, false, 4)
	a, _ := buildRandomDB(t, m, BuildOptions{Levels: 4, BatchTokens: 40})
	b, _ := buildRandomDB(t, m, BuildOptions{Levels: 4, BatchTokens: 40, MemLimit: 1})
	for i := range a.Man.Modules {
		ma, mb := a.Man.Modules[i], b.Man.Modules[i]
		if !slices.Equal(ma.RemovalOrder, mb.RemovalOrder) {
			t.Errorf("%s: orders differ", ma.Name)
		}
		for l := range ma.Levels {
			if ma.Levels[l] != mb.Levels[l] {
				t.Errorf("%s level %d: %+v vs %+v", ma.Name, l, ma.Levels[l], mb.Levels[l])
			}
		}
	}
}
