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
// the stage as the coordinator sees it, speedup their ratio.
//
//	go test ./dist -run '^$' -bench Stage -benchtime 5x
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
	// Two queues, one worker on the first and two on the second; stages
	// alternate between them so that the load of a shared machine, which
	// drifts, falls on both alike.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cos [2]*Coordinator
	for k, nw := range []int{1, 2} {
		q, err := StartQueue(context.Background(), "127.0.0.1:0", b.TempDir(), 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(q.Stop)
		for i := range nw {
			startWorker(b, q.URL, fmt.Sprintf("q%d-w%d", k, i), 0)
		}
		if cos[k], err = NewCoordinator(ctx, q.URL, "", evolve.RemoteInputs{RunID: fmt.Sprintf("bench%d", nw), Dense: dense, Database: pdb,
			Cache: cache, FitPool: fit, TrainPool: tr, Fitness: evolve.FitnessKL, Train: opts, Local: local}); err != nil {
			b.Fatal(err)
		}
	}
	stage := func(co *Coordinator, g int) {
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
	for _, co := range cos {
		stage(co, -1) // warm-up: workers fetch and load the inputs
	}
	var wall [2]float64
	b.ResetTimer()
	for i := range b.N {
		for k, co := range cos {
			t0 := time.Now()
			stage(co, i)
			wall[k] += time.Since(t0).Seconds()
		}
	}
	b.StopTimer()
	// Worker compute time over wall time: how many candidates ran at once.
	conc := func(co *Coordinator, wall float64) float64 {
		busy := 0.0
		co.mu.Lock()
		defer co.mu.Unlock()
		for k, rs := range co.results {
			if !strings.HasPrefix(k, "m1.") {
				busy += rs[0].Seconds
			}
		}
		return busy / wall
	}
	n := float64(b.N)
	b.ReportMetric(wall[0]/n, "s/stage-1w")
	b.ReportMetric(wall[1]/n, "s/stage-2w")
	b.ReportMetric(wall[0]/wall[1], "speedup")
	b.ReportMetric(conc(cos[0], wall[0]), "concurrency-1w")
	b.ReportMetric(conc(cos[1], wall[1]), "concurrency-2w")
}
