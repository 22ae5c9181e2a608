package train

import (
	"sync"
	"sync/atomic"

	"github.com/darwinlm/darwinlm-go/backend"
	cpubackend "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

// Pool fine-tunes several candidates at once, each on its own goroutine
// with its own FineTuner. Small models leave cores idle inside one
// fine-tuning (tiny matrices, short element-wise loops), so running one
// candidate per core with single-worker backends gives more candidates per
// second than running them one after another on all cores. Results are
// bitwise those of a serial FineTuner (fine-tuning does not depend on the
// worker count), in input order.
type Pool struct {
	fts []*FineTuner
}

// NewPool returns a pool of n fine-tuners. A CPU backend is given one
// worker per fine-tuner; other backends are shared as they are.
func NewPool(be backend.Backend, opts Options, n int) *Pool {
	n = max(n, 1)
	p := &Pool{}
	for i := 0; i < n; i++ {
		b := be
		if c, ok := be.(*cpubackend.CPU); ok && n > 1 {
			b = c.WithWorkers(1)
		}
		p.fts = append(p.fts, NewFineTuner(b, opts))
	}
	return p
}

// Size is the number of candidates fine-tuned at once.
func (p *Pool) Size() int { return len(p.fts) }

// Train fine-tunes every model (in place) on the same seqs, as in a
// selection stage, and returns the statistics and errors in input order.
func (p *Pool) Train(models []*model.Model, seqs [][]int) ([]FineTuneStats, []error) {
	stats := make([]FineTuneStats, len(models))
	errs := make([]error, len(models))
	if len(p.fts) > 1 {
		// The cores are busy with candidates: no per-op fan-out.
		defer nn.SerialScope()()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, ft := range p.fts[:min(len(p.fts), len(models))] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(models) {
					return
				}
				stats[i], errs[i] = ft.Train(models[i], seqs)
			}
		}()
	}
	wg.Wait()
	return stats, errs
}
