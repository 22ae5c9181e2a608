package shear

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/train"
)

// TestPruneDeterministic: the same configuration gives bitwise the same
// shrunk model, and the log and report agree with it.
func TestPruneDeterministic(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 4, KV: 2, HD: 4, Hidden: 16, Inter: 12, Vocab: 23, Layers: 3}, false, 3)
	toks := make([]int, 600)
	for i := range toks {
		toks[i] = (i*7 + i/5) % 23
	}
	cfg := Config{Model: m, Backend: cpuBackend(t), Target: Shape{Layers: 2, Hidden: 12, Heads: 3, KVHeads: 2, Inter: 8},
		Tokens: toks, SeqLen: 12, Batch: 2, Steps: 30, LR: 1e-3, LagLR: 0.5, Clip: 1, Seed: 4,
		LogPath: filepath.Join(t.TempDir(), "log.parquet")}
	a, ra, err := Prune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Prune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ta, tb := train.FromModel(a).Tensors(), train.FromModel(b).Tensors()
	for i := range ta {
		for j := range ta[i].Data {
			if math.Float32bits(ta[i].Data[j]) != math.Float32bits(tb[i].Data[j]) {
				t.Fatalf("%s[%d] differs between two identical runs", ta[i].Name, j)
			}
		}
	}
	if len(a.Layers) != 2 || a.Cfg.Hidden != 12 || a.NumParams() != ra.FinalParams || len(ra.KeptLayers) != 2 {
		t.Fatalf("shape %d layers hidden %d, report %+v", len(a.Layers), a.Cfg.Hidden, ra)
	}
	rows, err := parquet.ReadFile[LogRow](cfg.LogPath)
	if err != nil || len(rows) != 30 || rows[29].Tokens != 30*24 || rows[29].CE != ra.FinalCE {
		t.Fatalf("log: %d rows, err %v", len(rows), err)
	}
	// The multipliers move (ascent) and the target warms up linearly.
	if rows[0].TgtHidden != 16 || rows[29].TgtHidden != 12 || rows[29].L2Hidden <= 0 {
		t.Fatalf("first/last rows %+v / %+v", rows[0], rows[29])
	}
}

// TestTinyStoriesHalf is the acceptance run, scaled to under a minute:
// TinyStories-656K pruned to about half its parameters on 51k tokens. The
// expected shape reaches the target within 1% before the end, the result
// has exactly the target shape, and it round-trips through the Hugging
// Face layout.
func TestTinyStoriesHalf(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
	m, tok, err := model.Open("hf:raincandy-u/TinyStories-656K", "")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := data.ReadTexts("hf-dataset:roneneldan/TinyStories/default/validation_prefix[:3000]")
	if err != nil {
		t.Fatal(err)
	}
	base, _ := BaseShape(m)
	target, err := TargetFromParams(328000, m.Cfg, base)
	if err != nil {
		t.Fatal(err)
	}
	be := cpuBackend(t)
	small, rep, err := Prune(context.Background(), Config{Model: m, Backend: be, Target: target, Tokens: train.Tokenize(tok, docs),
		SeqLen: 64, Batch: 2, Steps: 400, LR: 1e-3, LagLR: 1, Warmup: 40, TargetWarmup: 80, Clip: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("target %v: expected %.3f after %d steps (%.1f s), within 1%% from step %d, %d parameters (arithmetic %d), KV heads %v",
		target, rep.FinalExpected, rep.Steps, rep.Seconds, rep.WithinStep, rep.FinalParams, rep.TargetParams, rep.KVHeads)
	if rep.WithinStep <= 0 || rep.WithinStep >= rep.Steps {
		t.Errorf("the expected shape did not settle within 1%% of the target before the end (from step %d; final gap %.4f)", rep.WithinStep, rep.FinalGap)
	}
	if len(small.Layers) != target.Layers || small.Cfg.Hidden != target.Hidden {
		t.Fatalf("result: %d layers, hidden %d; target %v", len(small.Layers), small.Cfg.Hidden, target)
	}
	for i, l := range small.Layers {
		if l.Heads != target.Heads || l.Inter != target.Inter {
			t.Fatalf("layer %d: %d heads, MLP %d; target %v", i, l.Heads, l.Inter, target)
		}
	}
	if small.NumParams() != rep.FinalParams || rep.FinalParams < rep.TargetParams || rep.FinalParams > rep.DenseParams*55/100 {
		t.Errorf("final %d parameters, target arithmetic %d, dense %d", rep.FinalParams, rep.TargetParams, rep.DenseParams)
	}
	dir := filepath.Join(t.TempDir(), "sheared")
	if err := model.SaveHF(small, dir, ""); err != nil {
		t.Fatal(err)
	}
	back, err := model.LoadHF(dir)
	if err != nil {
		t.Fatal(err)
	}
	seqs := [][]int{{1, 5, 9, 200, 17, 3}}
	want, got := small.Forward(be, seqs), back.Forward(be, seqs)
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			t.Fatalf("reloaded model: logit %d %v, in memory %v", i, got[i], want[i])
		}
	}
}
