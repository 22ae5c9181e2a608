package evolve

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

// BenchmarkGeneration: one generation of a paper-shaped search on
// stories260K (λ = 16, survivors 8,4,2,1, the paper's token budgets divided
// by 10: fitness 102,205,410,819 and training 1000,5000,10000,20000 tokens;
// 256-token pool sequences), training-aware and training-off, one and two
// candidates at once. Reports generations per minute and fine-tuning tokens
// per second (wall time), and CPU seconds per generation. The goal: 200 generations in 10 minutes (20/min).
//
//	go test -run '^$' -bench Generation -benchtime 3x ./evolve/
func BenchmarkGeneration(b *testing.B) {
	dbDir := storiesDB(b)
	be, _ := backend.Get("auto")
	dense, tok, err := model.Open(stories260K, "")
	if err != nil {
		b.Fatal(err)
	}
	db, err := prune.OpenDatabase(dbDir)
	if err != nil {
		b.Fatal(err)
	}
	docs, _ := data.ReadTexts(storiesText)
	fit, _ := prune.SampleSequences(docs[:len(docs)/2], tok, 20000, 256, "random", 0)
	tp, _ := prune.SampleSequences(docs[:len(docs)/2], tok, 60000, 256, "random", 123)
	var trainPool [][]int
	for _, s := range tp {
		if len(s) >= 2 {
			trainPool = append(trainPool, s)
		}
	}
	cache, err := NewDenseCache(be, dense, fit, 0, "", DefaultCacheMemory)
	if err != nil {
		b.Fatal(err)
	}
	space, _ := DatabaseSpace(db)
	lens := func(p [][]int) []int {
		l := make([]int, len(p))
		for i, s := range p {
			l[i] = len(s)
		}
		return l
	}
	for _, c := range []struct {
		train   []int
		workers int
	}{{[]int{1000, 5000, 10000, 20000}, 1}, {[]int{1000, 5000, 10000, 20000}, 2}, {[]int{0, 0, 0, 0}, 1}} {
		name := fmt.Sprintf("train=%v/workers=%d", c.train[0] > 0, c.workers)
		b.Run(name, func(b *testing.B) {
			ev, err := NewModelEvaluator(be, c.workers, dense, DatabaseStitcher(db, dense), train.SelectionPreset(), FitnessKL, cache, fit, trainPool, nil)
			if err != nil {
				b.Fatal(err)
			}
			var stages []Stage
			for i, s := range []int{8, 4, 2, 1} {
				stages = append(stages, Stage{Survivors: s, FitnessTokens: []int{102, 205, 410, 819}[i], TrainTokens: c.train[i]})
			}
			b.ResetTimer()
			t0, c0 := time.Now(), processCPU()
			if _, err := Search(context.Background(), Problem{Space: space, TrainLens: lens(trainPool), FitLens: lens(fit), Eval: ev},
				Options{TargetLevel: 5, Offspring: 16, Stages: stages, Generations: b.N, Seed: 1, Workers: c.workers}); err != nil {
				b.Fatal(err)
			}
			sec := time.Since(t0).Seconds()
			b.ReportMetric(float64(b.N)/sec*60, "generations/min")
			// CPU time is what other processes on a shared machine do not
			// inflate: on an idle machine with 2 cores fully used a
			// generation takes about cpu-s/generation ÷ 2.
			b.ReportMetric((processCPU()-c0)/float64(b.N), "cpu-s/generation")
			if c.train[0] > 0 {
				// Fine-tuning tokens per generation: 16·1000 + 8·5000 + 4·10000 + 3·20000 (at least).
				b.ReportMetric(156000*float64(b.N)/sec, "train-tokens/s")
			}
		})
	}
}
