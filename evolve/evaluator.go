package evolve

import (
	"context"
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// Stitcher builds a candidate's model from its levels (a pruning database;
// see DatabaseStitcher). The model's tensors may alias the dense model's:
// the evaluator clones before training.
type Stitcher interface {
	Stitch(levels []int) (*model.Model, error)
	Params(levels []int) (int64, error)
}

// ModelEvaluator is the Evaluator of a real search: stitch the candidate,
// fine-tune a copy with the selection preset (one AdamW step per training
// sequence; a fresh optimizer for every candidate and stage, so training
// never carries over), score it on the fitness pieces against the cached
// dense logits.
type ModelEvaluator struct {
	be                           backend.Backend // held-out evaluation (all cores)
	bes                          []backend.Backend
	tuners                       []*train.FineTuner
	arenas                       []*model.Arena[float32] // per worker, on its tuner's device
	stitch                       Stitcher
	dense                        *model.Model
	fit                          scorer
	fitPool, trainPool, evalPool [][]int
}

// NewModelEvaluator prepares an evaluator for workers concurrent
// candidates. With the CPU backend and several workers each worker gets an
// equal share of the cores (results do not depend on the split). cache
// holds the dense logits of fitPool (nil for ppl). evalPool is the
// held-out pool (may be empty).
func NewModelEvaluator(be backend.Backend, workers int, dense *model.Model, st Stitcher, opts train.Options,
	fitness string, cache *DenseCache, fitPool, trainPool, evalPool [][]int) (*ModelEvaluator, error) {
	if err := CheckFitness(fitness); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if fitness != FitnessPPL && cache == nil {
		return nil, fmt.Errorf("evolve: fitness %s needs the dense-logit cache", fitness)
	}
	e := &ModelEvaluator{be: be, stitch: st, dense: dense, fit: scorer{kind: fitness, dense: dense, cache: cache},
		fitPool: fitPool, trainPool: trainPool, evalPool: evalPool}
	workers = max(workers, 1)
	for range workers {
		wb := be
		if c, ok := be.(*cpu.CPU); ok && workers > 1 {
			wb = c.WithWorkers(max(1, c.Workers()/workers))
		}
		e.bes = append(e.bes, wb)
		ft := train.NewFineTuner(wb, opts)
		e.tuners = append(e.tuners, ft)
		e.arenas = append(e.arenas, model.NewArena(ft.Device()))
	}
	return e, nil
}

func (e *ModelEvaluator) Params(levels []int) (int64, error) { return e.stitch.Params(levels) }

// fitSeqs cuts the fitness pieces of a batch out of the pool.
func (e *ModelEvaluator) fitSeqs(b *Batch) ([][]int, []int) {
	seqs := make([][]int, len(b.Fit))
	ids := make([]int, len(b.Fit))
	for i, p := range b.Fit {
		seqs[i], ids[i] = e.fitPool[p.Seq][:p.Len], p.Seq
	}
	return seqs, ids
}

func (e *ModelEvaluator) Evaluate(ctx context.Context, worker int, levels []int, b *Batch, before bool) (Score, error) {
	m, err := e.stitch.Stitch(levels)
	if err != nil {
		return Score{}, err
	}
	if len(e.bes) > 1 {
		// Every core runs its own candidate: no per-op fan-out (train.Pool's
		// reasoning; results do not depend on it).
		defer nn.SerialScope()()
	}
	fs, ids := e.fitSeqs(b)
	sc := Score{Before: math.NaN(), Params: m.NumParams()}
	// The candidate is made resident on the worker's device once for its
	// fine-tuning and scoring (on the CPU the views are its slices).
	dev, ar := e.tuners[worker].Device(), e.arenas[worker]
	var f0 float64
	if before || len(b.Train) == 0 {
		r, err := m.Upload(dev)
		if err != nil {
			return Score{}, err
		}
		f0, err = e.fit.scoreResident(r, ar, fs, ids)
		r.Release()
		if err != nil {
			return Score{}, err
		}
	}
	if before {
		sc.Before = f0
	}
	if len(b.Train) == 0 {
		sc.Fitness = f0
		return sc, nil
	}
	if err := ctx.Err(); err != nil {
		return Score{}, err
	}
	mc := m.Clone() // m's tensors may be the dense model's
	r, err := mc.Upload(dev)
	if err != nil {
		return Score{}, err
	}
	defer r.Release()
	ts := make([][]int, len(b.Train))
	for i, j := range b.Train {
		ts[i] = e.trainPool[j]
	}
	if _, err := e.tuners[worker].TrainResident(r, ts); err != nil {
		return Score{}, err
	}
	if sc.Fitness, err = e.fit.scoreResident(r, ar, fs, ids); err != nil {
		return Score{}, err
	}
	return sc, nil
}

// HeldOut scores the candidate's database weights (no fine-tuning): the
// perplexity and KL(dense ‖ candidate) of the held-out pool (the dense
// model runs alongside; nothing is cached) and the perplexity of the
// fitness pool.
func (e *ModelEvaluator) HeldOut(ctx context.Context, levels []int) (ppl, kl, calibPPL float64, err error) {
	m, err := e.stitch.Stitch(levels)
	if err != nil {
		return 0, 0, 0, err
	}
	ppl, kl = math.NaN(), math.NaN()
	if len(e.evalPool) > 0 {
		ppl = (&scorer{kind: FitnessPPL}).score(e.be, m, e.evalPool, nil)
		kl = (&scorer{kind: FitnessKL, dense: e.dense}).score(e.be, m, e.evalPool, nil)
	}
	calibPPL = (&scorer{kind: FitnessPPL}).score(e.be, m, e.fitPool, nil)
	return ppl, kl, calibPPL, ctx.Err()
}
