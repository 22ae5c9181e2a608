// Command acceptance runs the acceptance experiment of the evolutionary
// search on stories260K (docs/search.md): a pruning database, a
// training-aware and a training-off search at level 5 (about half of the
// prunable parameters), then held-out KL and perplexity of the searched,
// uniform and DP configurations, one-shot and after an equal short
// post-training.
//
//	go run ./evolve/acceptance -out results/runs/evolve-acceptance -generations 30
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

const (
	modelSpec = "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	text      = "hf-dataset:roneneldan/TinyStories/default/validation_prefix"
)

type row struct {
	Name          string  `json:"name"`
	Levels        []int   `json:"levels"`
	Params        int64   `json:"params"`
	OneShotPPL    float64 `json:"oneshot_ppl"`
	OneShotKL     float64 `json:"oneshot_kl"`
	PostPPL       float64 `json:"post_ppl"`
	PostKL        float64 `json:"post_kl"`
	SearchMinutes float64 `json:"search_minutes,omitempty"`
}

func main() {
	out := flag.String("out", "results/runs/evolve-acceptance", "output folder")
	gens := flag.Int("generations", 30, "generations of each search")
	postTokens := flag.Int("post-tokens", 60000, "post-training tokens per configuration")
	seed := flag.Int64("seed", 0, "search seed")
	workers := flag.Int("workers", 1, "candidates evaluated at once")
	flag.Parse()
	progress.Quiet = true
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "acceptance:", err)
			os.Exit(1)
		}
	}
	must(os.MkdirAll(*out, 0o755))
	be, err := backend.Get("auto")
	must(err)
	dense, tok, err := model.Open(modelSpec, "")
	must(err)
	docs, err := data.ReadTexts(text)
	must(err)
	first := docs[:len(docs)/2]

	// 1. Database: 2^16 calibration tokens (the reference: 2^23), 10 levels.
	dbDir := filepath.Join(*out, "db")
	if _, err := os.Stat(filepath.Join(dbDir, prune.ManifestName)); err != nil {
		calib, err := prune.SampleSequences(first, tok, 1<<16, 512, "random", 0)
		must(err)
		must(prune.Build(ctx, be, dense, calib, prune.BuildOptions{Levels: 10, ModelID: modelSpec}, dbDir))
	}
	db, err := prune.OpenDatabase(dbDir)
	must(err)

	// 2. Searches: the paper's settings with token budgets / 10.
	search := func(name string, trainTok []int) (*evolve.Result, float64) {
		c := evolve.DefaultConfig()
		c.Model, c.Database, c.Calib = modelSpec, dbDir, text
		c.SeqLen, c.CalibTokens, c.TrainPoolTokens, c.EvalTokens = 512, 20000, 100000, 20000
		c.FitnessTokens, c.TrainTokens = []int{102, 205, 410, 819}, trainTok
		c.Generations, c.EvalEvery, c.Seed, c.Workers = *gens, 5, *seed, *workers
		c.Log, c.Out, c.Resume = filepath.Join(*out, name), filepath.Join(*out, name+".txt"), true
		t0 := time.Now()
		res, err := evolve.Run(ctx, c)
		must(err)
		fmt.Fprintf(os.Stderr, "%s: %d generations in %.1f min\n", name, res.Generations-res.Resumed, time.Since(t0).Minutes())
		return res, time.Since(t0).Minutes()
	}
	aware, ta := search("search-training-aware", []int{1000, 5000, 10000, 20000})
	off, to := search("search-training-off", []int{0, 0, 0, 0})

	// 3. Baselines at the same size.
	uni := prune.Uniform(db, 5)
	up, err := db.Params(uni)
	must(err)
	dp, err := prune.DP(db, up)
	must(err)
	dpLevels, err := db.Check(dp)
	must(err)

	// 4. Held-out evaluation (second half of the documents), one-shot and
	// after an equal post-training on the first half.
	eval, err := prune.SampleSequences(docs[len(docs)/2:], tok, 20000, 512, "random", 0)
	must(err)
	post, err := prune.SampleSequences(first, tok, *postTokens, 256, "random", 7)
	must(err)
	var postSeqs [][]int
	for _, s := range post {
		if len(s) >= 2 {
			postSeqs = append(postSeqs, s)
		}
	}
	st := evolve.DatabaseStitcher(db, dense)
	ev, err := evolve.NewModelEvaluator(be, 1, dense, st, train.SelectionPreset(), evolve.FitnessPPL, nil, eval[:1], nil, eval)
	must(err)
	popts := train.DefaultOptions() // AdamW (0.9, 0.95), constant lr
	popts.LR = 5e-4
	tuner := train.NewFineTuner(be, popts)
	measure := func(name string, lv []int, minutes float64) row {
		r := row{Name: name, Levels: lv, SearchMinutes: minutes}
		r.Params, err = st.Params(lv)
		must(err)
		r.OneShotPPL, r.OneShotKL, _, err = ev.HeldOut(ctx, lv)
		must(err)
		m, err := st.Stitch(lv)
		must(err)
		m = m.Clone()
		_, err = tuner.Train(m, postSeqs)
		must(err)
		tuned := fixed{m}
		ev2, err := evolve.NewModelEvaluator(be, 1, dense, tuned, train.SelectionPreset(), evolve.FitnessPPL, nil, eval[:1], nil, eval)
		must(err)
		r.PostPPL, r.PostKL, _, err = ev2.HeldOut(ctx, lv)
		must(err)
		fmt.Fprintf(os.Stderr, "%-22s %v params %d  one-shot ppl %.3f kl %.4f  post-trained ppl %.3f kl %.4f\n",
			name, lv, r.Params, r.OneShotPPL, r.OneShotKL, r.PostPPL, r.PostKL)
		return r
	}
	rows := []row{
		measure("DarwinLM (training-aware)", aware.Levels, ta),
		measure("EvoPress (training off)", off.Levels, to),
		measure("uniform level 5", uni.Levels, 0),
		measure("DP one-shot", dpLevels, 0),
	}
	b, _ := json.MarshalIndent(map[string]any{"dense_params": dense.NumParams(), "generations": *gens, "post_tokens": *postTokens,
		"seed": *seed, "rows": rows}, "", " ")
	must(os.WriteFile(filepath.Join(*out, "acceptance.json"), b, 0o644))
	fmt.Println("| configuration | levels (down_proj…, o_proj…) | params | one-shot ppl | one-shot KL | post-trained ppl | post-trained KL |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %v | %d | %.3f | %.4f | %.3f | %.4f |\n", r.Name, r.Levels, r.Params, r.OneShotPPL, r.OneShotKL, r.PostPPL, r.PostKL)
	}
}

// fixed is a Stitcher that always returns one (post-trained) model.
type fixed struct{ m *model.Model }

func (f fixed) Stitch([]int) (*model.Model, error) { return f.m, nil }
func (f fixed) Params([]int) (int64, error)        { return f.m.NumParams(), nil }
