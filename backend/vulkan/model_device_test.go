//go:build vulkan && cgo

package vulkan

// Model-level cross-checks of the device-resident path: the training graph
// (forward, device cross-entropy, backward) and the fine-tuner on the
// Vulkan device against the CPU host device, both tiny models.

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

func needMirror(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
}

// openModel opens spec (a hub or local model) or fails the test.
func openModel(tb testing.TB, spec string) *model.Model {
	tb.Helper()
	m, _, err := model.Open(spec, "")
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func targetsOf(seqs [][]int) []int {
	var tg []int
	for _, s := range seqs {
		for i := range s {
			if i+1 < len(s) {
				tg = append(tg, s[i+1])
			} else {
				tg = append(tg, -1)
			}
		}
	}
	return tg
}

// maxRelDiff is max|a−b| / max|a| over a tensor.
func maxRelDiff(a, b []float32) (float64, float64) {
	var mx, diff float64
	for j, v := range a {
		mx = math.Max(mx, math.Abs(float64(v)))
		diff = math.Max(diff, math.Abs(float64(v)-float64(b[j])))
	}
	return diff / math.Max(mx, 1e-30), mx
}

// TestDeviceGraphGradients: one forward, device cross-entropy and backward
// of a packed batch through train's device graph on Vulkan vs the CPU
// host device: loss within 1e-5 relative, every gradient tensor within
// 1e-4·max|g| (the op tolerance grown through the layers), with saved and
// with recomputed attention probabilities.
func TestDeviceGraphGradients(t *testing.T) {
	needMirror(t)
	for _, staging := range []bool{false, true} {
		t.Run(fmt.Sprintf("staging=%v", staging), func(t *testing.T) { graphGradients(t, open(t, Options{ForceStaging: staging})) })
	}
}

// graphLossGrads runs one forward of seqs through a device graph on the
// resident weights r of m, the device cross-entropy (its mean returned) and
// the backward; the gradients come back as host tensors named as m's.
func graphLossGrads(t *testing.T, r *model.Resident, m *model.Model, seqs [][]int, saveProbs bool) (float64, []train.Tensor[float32]) {
	t.Helper()
	dev := r.Dev
	g := train.NewDeviceGraph(r)
	defer g.Free()
	g.SaveProbs = saveProbs
	z, err := g.ForwardView(seqs)
	if err != nil {
		t.Fatal(err)
	}
	dl := g.Arena().Take(z.N)
	loss, err := dev.CrossEntropy(dl, z, targetsOf(seqs), m.Cfg.Vocab, 1)
	if err != nil {
		t.Fatal(err)
	}
	hdl := make([]float32, z.N)
	if err := dev.Download(hdl, dl); err != nil {
		t.Fatal(err)
	}
	gw := train.ZeroLike(train.FromModel(m))
	g.Backward(hdl, gw)
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	return loss, gw.Tensors()
}

// snapshot copies m's weight tensors (the state before training).
func snapshot(m *model.Model) []train.Tensor[float32] {
	var ts []train.Tensor[float32]
	for _, w := range train.FromModel(m).Tensors() {
		ts = append(ts, train.Tensor[float32]{Name: w.Name, Data: slices.Clone(w.Data)})
	}
	return ts
}

// graphGradients is TestDeviceGraphGradients on d (staging: unmapped device
// buffers, the path of discrete GPUs).
func graphGradients(t *testing.T, d *Device) {
	for mi, spec := range []string{"hf:raincandy-u/TinyStories-656K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"} {
		var grads [2][]train.Tensor[float32]
		var loss [2]float64
		for i, dev := range []backend.Device[float32]{nn.NewHost[float32](cpu.New()), d.F32()} {
			m := openModel(t, spec)
			seqs := pseudoSeqs(3, 37+mi, m.Cfg.Vocab)
			seqs[1] = seqs[1][:20] // ragged batch
			r, err := m.Upload(dev)
			if err != nil {
				t.Fatal(err)
			}
			loss[i], grads[i] = graphLossGrads(t, r, m, seqs, mi == 0)
			r.Release()
		}
		if math.Abs(loss[1]-loss[0]) > 1e-5*loss[0] {
			t.Errorf("%s: loss %v vs CPU %v", spec, loss[1], loss[0])
		}
		worst := 0.0
		for k, g := range grads[0] {
			rel, mx := maxRelDiff(g.Data, grads[1][k].Data)
			worst = math.Max(worst, rel)
			if rel > 1e-4 {
				t.Errorf("%s %s: max |Δgrad| %.2e of max |grad| %.2e", spec, g.Name, rel, mx)
			}
		}
		t.Logf("%s: loss cpu %.7f vulkan %.7f; %d gradient tensors, worst max|Δg|/max|g| %.1e", spec, loss[0], loss[1], len(grads[0]), worst)
	}
	usedPrograms(t, d, "attn", "attn_ds", "attn_dq", "attn_dkv", "rope_seq", "xent_set", "rmsnorm_bwd_dx", "swiglu_bwd", "embed_bwd")
}

// TestDeviceFineTune: two SGD fine-tuning steps (forward, loss, backward,
// gradient norm and the update on the device) with FineTuner on the Vulkan
// backend vs the CPU; every tensor's change within 1e-4 of the CPU's
// largest change.
func TestDeviceFineTune(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	vk := &Backend{d: d}
	spec := "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	opts := train.Options{Optimizer: "sgd", LR: 0.5, Schedule: "constant"}
	var after [2][]train.Tensor[float32]
	var before []train.Tensor[float32]
	var stats [2]train.FineTuneStats
	for i, be := range []backend.Backend{cpu.New(), vk} {
		m := openModel(t, spec)
		if i == 0 {
			before = snapshot(m)
		}
		st, err := train.NewFineTuner(be, opts).Train(m, pseudoSeqs(2, 48, m.Cfg.Vocab))
		if err != nil {
			t.Fatal(err)
		}
		stats[i] = st
		after[i] = train.FromModel(m).Tensors()
	}
	if math.Abs(stats[1].MeanLoss-stats[0].MeanLoss) > 1e-5*stats[0].MeanLoss {
		t.Errorf("mean loss %v vs CPU %v", stats[1].MeanLoss, stats[0].MeanLoss)
	}
	for k, w := range after[0] {
		var mx, diff float64
		for j, v := range w.Data {
			mx = math.Max(mx, math.Abs(float64(v)-float64(before[k].Data[j])))
			diff = math.Max(diff, math.Abs(float64(v)-float64(after[1][k].Data[j])))
		}
		if diff > 1e-4*mx {
			t.Errorf("%s: max |Δw vulkan − Δw cpu| %.2e, max |Δw| %.2e", w.Name, diff, mx)
		}
	}
	t.Logf("mean loss cpu %.7f vulkan %.7f over %d steps", stats[0].MeanLoss, stats[1].MeanLoss, stats[1].Steps)
	usedPrograms(t, d, "attn_ds", "xent_set", "sumsq", "sgd")
}

// TestPruningDatabase builds the stories260K pruning database (Hessians
// from the device forward's activations, SyrkTN through the host-slice
// backend; structured OBS on the host) with --backend vulkan and with the
// CPU: the removal orders must be identical and every level's error within
// 1e-5 relative.
func TestPruningDatabase(t *testing.T) {
	needMirror(t)
	d, vk := openBackend(t)
	docs, err := data.ReadTexts("hf-dataset:roneneldan/TinyStories/default/validation_prefix[:300]")
	if err != nil {
		t.Fatal(err)
	}
	var dbs [2]*prune.Database
	for i, be := range []backend.Backend{cpu.New(), vk} {
		m, tok, err := model.Open("hf:karpathy/tinyllamas/stories260K/stories260K.bin", "")
		if err != nil {
			t.Fatal(err)
		}
		seqs, err := prune.SampleSequences(docs, tok, 2048, 128, "first", 0)
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir() + "/db"
		if err := prune.Build(context.Background(), be, m, seqs, prune.BuildOptions{Levels: 6}, out); err != nil {
			t.Fatal(err)
		}
		if dbs[i], err = prune.OpenDatabase(out); err != nil {
			t.Fatal(err)
		}
	}
	if err := vk.Err(); err != nil {
		t.Fatalf("a host-slice product fell back to the CPU: %v", err)
	}
	worst := 0.0
	for mi, a := range dbs[0].Man.Modules {
		b := dbs[1].Man.Modules[mi]
		if !slices.Equal(a.RemovalOrder, b.RemovalOrder) {
			t.Errorf("%s: removal order %v, CPU %v", a.Name, b.RemovalOrder, a.RemovalOrder)
		}
		for li, la := range a.Levels {
			lb := b.Levels[li]
			if la.Removed != lb.Removed {
				t.Errorf("%s level %d: %d removed, CPU %d", a.Name, li, lb.Removed, la.Removed)
			}
			if la.Error > 0 {
				rel := math.Abs(la.Error-lb.Error) / la.Error
				worst = math.Max(worst, rel)
				if rel > 1e-5 {
					t.Errorf("%s level %d: error %v, CPU %v", a.Name, li, lb.Error, la.Error)
				}
			}
		}
	}
	t.Logf("%d modules: removal orders identical, worst relative level-error difference %.1e", len(dbs[0].Man.Modules), worst)
	usedPrograms(t, d, "attn", "gemm_tn")
}

// TestSearchGeneration runs one generation of the training-aware search on
// stories260K (4 offspring, 2 selection stages, fine-tuning in selection)
// with --backend vulkan and with the CPU: the same candidates, the same
// survivors at every stage and the same winner, fitness within 1e-5
// relative. About 75 s on lavapipe: set DARWINLM_VULKAN_SLOW=1.
func TestSearchGeneration(t *testing.T) {
	needMirror(t)
	if os.Getenv("DARWINLM_VULKAN_SLOW") == "" {
		t.Skip("about 75 s on lavapipe: set DARWINLM_VULKAN_SLOW=1")
	}
	open(t, Options{}).Close() // skips without a driver
	const spec = "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	const text = "hf-dataset:roneneldan/TinyStories/default/validation_prefix[:500]"
	m, tok, err := model.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := data.ReadTexts(text)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := prune.SampleSequences(docs, tok, 4096, 256, "first", 0)
	if err != nil {
		t.Fatal(err)
	}
	db := t.TempDir() + "/db"
	if err := prune.Build(context.Background(), cpu.New(), m, seqs, prune.BuildOptions{Levels: 10}, db); err != nil {
		t.Fatal(err)
	}
	var rows [2][]evolve.CandidateRow
	var res [2]*evolve.Result
	for i, be := range []string{"cpu", fmt.Sprintf("vulkan:%d", testDevice())} {
		c := evolve.DefaultConfig()
		dir := t.TempDir()
		c.Model, c.Backend, c.Database, c.Calib, c.Sampler = spec, be, db, text, "first"
		c.SeqLen, c.CalibTokens, c.TrainPoolTokens, c.EvalTokens = 128, 4000, 8000, 2000
		c.TargetLevel, c.Offspring, c.Survivors = 5, 4, []int{2, 1}
		c.FitnessTokens, c.TrainTokens, c.LR = []int{256, 512}, []int{512, 1024}, 1e-4
		c.Generations, c.EvalEvery, c.Log, c.Out = 1, 1, dir+"/log", dir+"/out.txt"
		if res[i], err = evolve.Run(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		if rows[i], err = evolve.ReadCandidates(dir + "/log/candidates.parquet"); err != nil {
			t.Fatal(err)
		}
	}
	if len(rows[0]) != len(rows[1]) || len(rows[0]) == 0 {
		t.Fatalf("%d candidate rows, CPU %d", len(rows[1]), len(rows[0]))
	}
	worst := 0.0
	for j, a := range rows[0] {
		b := rows[1][j]
		if a.Candidate != b.Candidate || a.Stage != b.Stage || !slices.Equal(a.Levels, b.Levels) || a.Survived != b.Survived {
			t.Errorf("row %d: candidate %d stage %d levels %v survived %v; CPU %d %d %v %v",
				j, b.Candidate, b.Stage, b.Levels, b.Survived, a.Candidate, a.Stage, a.Levels, a.Survived)
		}
		rel := math.Abs(a.Fitness-b.Fitness) / a.Fitness
		worst = math.Max(worst, rel)
		if rel > 1e-5 {
			t.Errorf("candidate %d stage %d: fitness %v, CPU %v", a.Candidate, a.Stage, b.Fitness, a.Fitness)
		}
	}
	if !slices.Equal(res[0].Levels, res[1].Levels) {
		t.Errorf("winner %v, CPU %v", res[1].Levels, res[0].Levels)
	}
	t.Logf("%d candidate rows: same candidates, survivors and winner %v; worst relative fitness difference %.1e", len(rows[0]), res[0].Levels, worst)
}

// TestGreedyGeneration: 40 greedy tokens of both tiny models through the
// KV cache (device buffers; every step attends to the cache as K/V parts
// at Pos > 0) on Vulkan give the CPU's tokens, last logits within 1e-5.
func TestGreedyGeneration(t *testing.T) {
	needMirror(t)
	d := open(t, Options{})
	vk := &Backend{d: d}
	for _, spec := range []string{"hf:raincandy-u/TinyStories-656K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"} {
		var toks [2][]int
		var last [2][]float32
		for i, be := range []backend.Backend{cpu.New(), vk} {
			m, tok, err := model.Open(spec, "")
			if err != nil {
				t.Fatal(err)
			}
			cache := m.NewCache()
			ids := tok.Encode("Once upon a time")
			logits := m.Step(be, cache, ids)
			for n := 0; n < 40; n++ {
				next := 0
				for j, v := range logits {
					if v > logits[next] {
						next = j
					}
				}
				toks[i] = append(toks[i], next)
				logits = m.Step(be, cache, []int{next})
			}
			last[i] = append([]float32(nil), logits...)
			cache.Release()
		}
		if !slices.Equal(toks[0], toks[1]) {
			t.Errorf("%s: tokens %v, CPU %v", spec, toks[1], toks[0])
		}
		rel, _ := maxRelDiff(last[0], last[1])
		if rel > 1e-5 {
			t.Errorf("%s: last logits differ by %.2e of their largest", spec, rel)
		}
		t.Logf("%s: 40 greedy tokens identical; last logits within %.1e", spec, rel)
	}
	usedPrograms(t, d, "attn")
}
