package train

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// train.Run as a library: an interrupted run resumed from its checkpoint
// ends bitwise where an uninterrupted one does; bad configurations fail
// before any compute.
func TestRunResumeBitwise(t *testing.T) {
	rc := randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 16, Inter: 12, Vocab: 31, Layers: 2}
	toks := testSeqs(1, 400, rc.Vocab, 2)[0]
	o := DefaultOptions()
	o.LR, o.Schedule, o.Warmup, o.WeightDecay, o.Clip = 1e-2, "cosine", 2, 0.01, 1
	cfg := func(out string) RunConfig {
		return RunConfig{Backend: cpu(t), Model: randomModel(rc, true, 1), ModelName: "random", Data: "synthetic", Tokens: toks,
			SeqLen: 16, Batch: 2, Steps: 9, Seed: 3, Options: o, Out: out, CheckpointEvery: 2, Keep: 2}
	}
	a := cfg(t.TempDir())
	ra, err := Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg(t.TempDir())
	stop := errors.New("stop")
	b.OnStep = func(st StepStats) error {
		if st.Step == 5 {
			return stop
		}
		return nil
	}
	if _, err := Run(context.Background(), b); !errors.Is(err, stop) {
		t.Fatalf("interrupted run: %v", err)
	}
	b2 := cfg(b.Out)
	b2.Resume = true
	rb, err := Run(context.Background(), b2)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Steps != 9 || ra.Steps != 9 || rb.Tokens != ra.Tokens || rb.FinalLoss != ra.FinalLoss || len(rb.Log) != 9 {
		t.Fatalf("results differ: %+v vs %+v", ra, rb)
	}
	if !slices.Equal(flatWeights(a.Model), flatWeights(b2.Model)) {
		t.Fatal("resumed weights differ from the uninterrupted run's")
	}
	// Resuming with other settings is refused, naming them.
	c := cfg(b.Out)
	c.Resume, c.Options.LR = true, 2e-2
	if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("resume with another lr: %v", err)
	}
	for _, bad := range []struct {
		edit func(*RunConfig)
		want string
	}{
		{func(c *RunConfig) { c.Options = Options{} }, "optimizer is not set"},
		{func(c *RunConfig) { c.TokenBudget = 100 }, "exactly one"},
		{func(c *RunConfig) { c.SeqLen = 65 }, "context"},
		{func(c *RunConfig) { c.Tokens = []int{1, 2, 99, 3} }, "vocabulary"},
		{func(c *RunConfig) { c.Out = "" }, "output folder"},
		{func(c *RunConfig) { c.Options.KDWeight = 0.5 }, "teacher"},
	} {
		c := cfg(t.TempDir())
		before := slices.Clone(flatWeights(c.Model))
		bad.edit(&c)
		_, err := Run(context.Background(), c)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("want an error mentioning %q, got %v", bad.want, err)
		}
		if !slices.Equal(before, flatWeights(c.Model)) {
			t.Errorf("%q: weights changed", bad.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, cfg(t.TempDir())); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}
