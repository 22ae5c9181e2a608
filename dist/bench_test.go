package dist

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

// BenchmarkStage: one selection stage of 8 candidates of stories260K
// (fine-tune on ≥ 2000 tokens, score 512), evaluated by 1 or 2 worker
// processes of one thread each (GOMAXPROCS=1); s/stage is the wall time of
// the stage as the coordinator sees it. On an idle 2-core machine the
// ratio of the two is the scale-out factor.
//
//	go test ./dist -run '^$' -bench Stage -benchtime 3x
func BenchmarkStage(b *testing.B) {
	db, _ := setup(b)
	be, _ := backend.Get("cpu")
	dense, tok, err := model.Open(stories260K, "")
	if err != nil {
		b.Fatal(err)
	}
	pdb, err := prune.OpenDatabase(db)
	if err != nil {
		b.Fatal(err)
	}
	docs, err := data.ReadTexts(storiesText)
	if err != nil {
		b.Fatal(err)
	}
	fit, err := prune.SampleSequences(docs[:len(docs)/2], tok, 2048, 128, "random", 0)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := prune.SampleSequences(docs[:len(docs)/2], tok, 4096, 128, "random", 123)
	if err != nil {
		b.Fatal(err)
	}
	cache, err := evolve.NewDenseCache(be, dense, fit, 0, "", 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	opts := train.SelectionPreset()
	local, err := evolve.NewModelEvaluator(be, 1, dense, evolve.DatabaseStitcher(pdb, dense), opts, evolve.FitnessKL, cache, fit, tr, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := &evolve.Batch{}
	for i := 0; batch.TrainTokens < 2000; i++ {
		batch.Train = append(batch.Train, i)
		batch.TrainTokens += len(tr[i])
	}
	for i := 0; batch.FitTokens < 512; i++ {
		n := min(len(fit[i]), 512-batch.FitTokens)
		batch.Fit = append(batch.Fit, evolve.Piece{Seq: i, Len: n})
		batch.FitTokens += n
	}
	tmpl := pdb.Template()
	for _, nw := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", nw), func(b *testing.B) {
			q, err := StartQueue(context.Background(), "127.0.0.1:0", b.TempDir(), 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Stop()
			for i := range nw {
				startWorker(b, q.URL, fmt.Sprintf("w%d", i), 0)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			co, err := NewCoordinator(ctx, q.URL, "", evolve.RemoteInputs{RunID: fmt.Sprintf("bench%d", nw), Dense: dense, Database: pdb,
				Cache: cache, FitPool: fit, TrainPool: tr, Fitness: evolve.FitnessKL, Train: opts, Local: local})
			if err != nil {
				b.Fatal(err)
			}
			stage := func(g int) {
				var wg sync.WaitGroup
				for c := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						lv := make([]int, len(tmpl.Names))
						for i := range lv {
							lv[i] = 2 + (i+c)%3
						}
						tctx := evolve.WithTask(ctx, evolve.TaskInfo{RunID: co.run, Generation: g, Stage: 0, Candidate: int64(c)})
						if _, err := co.Evaluate(tctx, 0, lv, batch, false); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			stage(-1) // warm-up: workers fetch and load the inputs
			b.ResetTimer()
			t0 := time.Now()
			for i := range b.N {
				stage(i)
			}
			wall := time.Since(t0).Seconds()
			b.ReportMetric(wall/float64(b.N), "s/stage")
			// Worker compute time over wall time: how many candidates ran at
			// once (on a machine other jobs load, each worker's compute time
			// stretches with the load, so compare this with nw).
			busy := 0.0
			co.mu.Lock()
			for k, rs := range co.results {
				if !strings.HasPrefix(k, "m1.") {
					busy += rs[0].Seconds
				}
			}
			co.mu.Unlock()
			b.ReportMetric(busy/wall, "concurrency")
		})
	}
}
