package evolve

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
)

const (
	stories260K = "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	storiesText = "hf-dataset:roneneldan/TinyStories/default/validation_prefix"
)

var shared struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	progress.Quiet = true
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// storiesDB builds (once per test binary) a 10-level database of
// stories260K from 8192 calibration tokens of the TinyStories prefix.
func storiesDB(t testing.TB) string {
	t.Helper()
	if hub.Mirror() == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	if testing.Short() {
		t.Skip("builds a pruning database")
	}
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "evolve-test-db-")
		if shared.err != nil {
			return
		}
		be, _ := backend.Get("auto")
		m, tok, err := model.Open(stories260K, "")
		if err != nil {
			shared.err = err
			return
		}
		docs, err := data.ReadTexts(storiesText)
		if err != nil {
			shared.err = err
			return
		}
		calib, err := prune.SampleSequences(docs[:len(docs)/2], tok, 8192, 256, "random", 0)
		if err != nil {
			shared.err = err
			return
		}
		shared.err = prune.Build(context.Background(), be, m, calib, prune.BuildOptions{Levels: 10, ModelID: stories260K}, filepath.Join(shared.dir, "db"))
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return filepath.Join(shared.dir, "db")
}

// smallConfig is a quick search on stories260K.
func smallConfig(db, dir string) Config {
	c := DefaultConfig()
	c.Model, c.Database, c.Calib = stories260K, db, storiesText
	c.CalibTokens, c.TrainPoolTokens, c.EvalTokens, c.SeqLen = 3000, 6000, 1500, 128
	c.Offspring, c.Survivors, c.FitnessTokens, c.TrainTokens = 6, []int{3, 2, 1}, []int{64, 128, 256}, []int{150, 300, 600}
	c.Generations, c.EvalEvery, c.Seed = 3, 2, 4
	c.Log, c.Out = filepath.Join(dir, "log"), filepath.Join(dir, "config.txt")
	return c
}

func TestRunStories260K(t *testing.T) {
	db := storiesDB(t)
	dir := t.TempDir()
	c := smallConfig(db, dir)
	c.FitnessBefore = true
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := prune.ReadLevelConfig(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	d, err := prune.OpenDatabase(db)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := d.Check(cfg)
	if err != nil || !slices.Equal(lv, res.Levels) {
		t.Fatalf("--out holds %v (%v), result %v", lv, err, res.Levels)
	}
	space, _ := DatabaseSpace(d)
	if got := space.GroupSums(lv); !slices.Equal(got, []int{25, 25}) {
		t.Fatalf("group sums %v", got)
	}
	if p, _ := d.Params(cfg); p != res.Params {
		t.Fatalf("params %d, database says %d", res.Params, p)
	}
	cands, err := ReadCandidates(filepath.Join(c.Log, CandidatesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 3*(6+3+3) {
		t.Fatalf("%d candidate rows", len(cands))
	}
	for _, r := range cands {
		p, _ := d.Params(prune.LevelConfig{Names: cfg.Names, Levels: toInts(r.Levels)})
		if r.Params != p || r.FitnessBeforeTrain == nil || !(r.Fitness > 0) || r.RunID != res.RunID {
			t.Fatalf("row %+v (database params %d)", r, p)
		}
	}
	gens, _ := ReadGenerations(filepath.Join(c.Log, GenerationsFile))
	for _, g := range gens {
		due := g.Generation == -1 || g.Generation == 1 || g.Generation == 2
		if (g.EvalPPL != nil) != due || (g.EvalKL != nil) != due {
			t.Fatalf("generation %d: held-out figures %v %v", g.Generation, g.EvalPPL, g.EvalKL)
		}
		if due && !(*g.EvalPPL > 1 && *g.EvalKL > 0) {
			t.Fatalf("generation %d: ppl %v kl %v", g.Generation, *g.EvalPPL, *g.EvalKL)
		}
	}
}

func toInts(l []int32) []int {
	out := make([]int, len(l))
	for i, v := range l {
		out[i] = int(v)
	}
	return out
}

// TestRunBadInput: each error names the problem and comes before compute
// (the log folder stays empty of Parquet files).
func TestRunBadInput(t *testing.T) {
	db := storiesDB(t)
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.TargetLevel = 11 }, "--target-level 11 is outside the database"},
		{func(c *Config) { c.TargetLevel = 5.3 }, "cannot be reached: group mlp.down_proj has 5 modules"},
		{func(c *Config) { c.TargetLevel = 10 }, "no mutation possible"},
		{func(c *Config) { c.FitnessTokens = []int{64, 128} }, "stage lists of different lengths"},
		{func(c *Config) { c.Survivors = []int{3, 2, 2} }, "last stage must keep exactly 1"},
		{func(c *Config) { c.Fitness = "mse" }, `--fitness "mse"`},
		{func(c *Config) { c.Database = t.TempDir() }, "not a pruning database"},
		{func(c *Config) { c.FitnessTokens = []int{64, 128, 5000} }, "fitness pool holds"},
		{func(c *Config) { c.SeqLen = 1024 }, "exceeds the model's context of 512"},
		{func(c *Config) { c.Calib = "/nonexistent.txt" }, "--calib"},
		{func(c *Config) { c.Out = "/nonexistent/dir/c.txt" }, "--out"},
	} {
		dir := t.TempDir()
		cfg := smallConfig(db, dir)
		c.mod(&cfg)
		_, err := Run(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
		if _, err := os.Stat(filepath.Join(cfg.Log, GenerationsFile)); err == nil {
			t.Errorf("%q: the log was written", c.want)
		}
	}

	// A foreign log without --resume, and --resume with a changed setting.
	dir := t.TempDir()
	cfg := smallConfig(db, dir)
	cfg.Generations = 0
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "pass --resume") {
		t.Errorf("reused log: %v", err)
	}
	cfg.Resume, cfg.TrainTokens = true, []int{150, 300, 700}
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "train-tokens (log: [150,300,600], now: [150,300,700])") {
		t.Errorf("changed setting: %v", err)
	}
	cfg.TrainTokens, cfg.Calib = []int{150, 300, 600}, storiesText+"[:2000]"
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "calib (log:") {
		t.Errorf("changed data: %v", err)
	}
}

// TestRunFitnessKindsAndNonIntegerTarget: sparse_kl and ppl run end to end,
// and a non-integer target starts from the best random configuration with
// the target's level sums (5.2 × 5 modules = 26 per group).
func TestRunFitnessKindsAndNonIntegerTarget(t *testing.T) {
	db := storiesDB(t)
	for _, fit := range []string{FitnessSparseKL, FitnessPPL} {
		dir := t.TempDir()
		c := smallConfig(db, dir)
		c.Fitness, c.Generations, c.TrainTokens = fit, 1, []int{0, 0, 0}
		c.TargetLevel, c.InitiallyGenerated, c.InitialTokens = 5.2, 4, 100
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatalf("%s: %v", fit, err)
		}
		d, _ := prune.OpenDatabase(db)
		space, _ := DatabaseSpace(d)
		if got := space.GroupSums(res.Levels); !slices.Equal(got, []int{26, 26}) {
			t.Fatalf("%s: group sums %v", fit, got)
		}
		cands, _ := ReadCandidates(filepath.Join(c.Log, CandidatesFile))
		init := 0
		for _, r := range cands {
			if r.Generation == -1 {
				init++
				if r.FitnessTokens != 100 || r.TrainTokens != 0 {
					t.Fatalf("%s: initial row %+v", fit, r)
				}
			}
			if fit == FitnessPPL && !(r.Fitness > 1) || fit == FitnessSparseKL && !(r.Fitness > 0) {
				t.Fatalf("%s: fitness %v", fit, r.Fitness)
			}
		}
		if init != 4 {
			t.Fatalf("%s: %d initial rows", fit, init)
		}
	}
}
