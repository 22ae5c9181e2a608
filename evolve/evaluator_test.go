package evolve

import (
	"context"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/train"
)

// scaleStitcher stands in for a database: the level of module m (layer m's
// down_proj for m < L, layer m−L's o_proj after) scales that matrix by
// 1 − level/10.
type scaleStitcher struct{ dense *model.Model }

func (s scaleStitcher) Stitch(lv []int) (*model.Model, error) {
	m := s.dense.Clone()
	L := len(m.Layers)
	for i, l := range lv {
		w := m.Layers[i%L].Wdown
		if i >= L {
			w = m.Layers[i%L].Wo
		}
		for j := range w {
			w[j] *= float32(1 - float64(l)/10)
		}
	}
	return m, nil
}

func (s scaleStitcher) Params(lv []int) (int64, error) { return s.dense.NumParams(), nil }

func tinyModel() *model.Model {
	return modeltest.Random(modeltest.Cfg{Heads: 4, KV: 2, HD: 4, Hidden: 16, Inter: 24, Vocab: 37, Layers: 2}, false, 5)
}

func randomPool(n, vocab, maxLen int, seed uint64) [][]int {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([][]int, n)
	for i := range out {
		s := make([]int, 1+r.IntN(maxLen))
		for j := range s {
			s[j] = r.IntN(vocab)
		}
		out[i] = s
	}
	return out
}

// poolLens returns the lengths of pool's sequences and the sequences that
// can train (two tokens or more).
func poolLens(pool [][]int) (lens []int, trainable [][]int) {
	lens = make([]int, len(pool))
	for i, s := range pool {
		lens[i] = len(s)
		if len(s) >= 2 {
			trainable = append(trainable, s)
		}
	}
	return lens, trainable
}

func logSoftmax64(z []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, float64(v))
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - mx)
	}
	out := make([]float64, len(z))
	for i, v := range z {
		out[i] = float64(v) - mx - math.Log(s)
	}
	return out
}

// naiveFitness is the reference's metric written out in float64, one
// sequence and one position at a time: dense logits come from a forward
// pass over the whole pool sequence, cut to the piece (as the reference
// cuts its cached logits).
func naiveFitness(be backend.Backend, kind string, dense, cand *model.Model, pool [][]int, b *Batch) float64 {
	V := dense.Cfg.Vocab
	var sum float64
	n := 0
	for _, p := range b.Fit {
		seq := pool[p.Seq][:p.Len]
		zd := dense.Forward(be, [][]int{pool[p.Seq]})
		zc := cand.Forward(be, [][]int{seq})
		for t := 0; t+1 < len(seq); t++ {
			lq := logSoftmax64(zc[t*V : (t+1)*V])
			switch kind {
			case FitnessPPL:
				sum -= lq[seq[t+1]]
			case FitnessKL:
				lp := logSoftmax64(zd[t*V : (t+1)*V])
				for v := range V {
					sum += math.Exp(lp[v]) * (lp[v] - lq[v])
				}
			case FitnessSparseKL:
				row := zd[t*V : (t+1)*V]
				idx := make([]int, V)
				for i := range idx {
					idx[i] = i
				}
				sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
				idx = idx[:10]
				a, c := make([]float32, 10), make([]float32, 10)
				for i, v := range idx {
					a[i], c[i] = row[v], zc[t*V+v]
				}
				lp, lq := logSoftmax64(a), logSoftmax64(c)
				for i := range idx {
					sum += math.Exp(lp[i]) * (lp[i] - lq[i])
				}
			}
			n++
		}
	}
	if kind == FitnessPPL {
		return math.Exp(sum / float64(n))
	}
	return sum / float64(n)
}

func TestFitnessMatchesNaive(t *testing.T) {
	be := cpu.New()
	dense := tinyModel()
	st := scaleStitcher{dense}
	cand, _ := st.Stitch([]int{3, 0, 5, 2})
	// Enough sequences for several forward chunks (> chunkTokens rows),
	// including one-token sequences (no predicting position).
	pool := randomPool(200, dense.Cfg.Vocab, 64, 3)
	lens, _ := poolLens(pool)
	for _, budget := range []int{50, 5000} {
		b := drawBatch(nil, lens, 0, budget, newStream(1, streamStage, 0, budget))
		for _, kind := range []string{FitnessKL, FitnessSparseKL, FitnessPPL} {
			for _, onDisk := range []bool{false, true} {
				if onDisk && kind != FitnessKL {
					continue
				}
				var cache *DenseCache
				if kind != FitnessPPL {
					k := 0
					if kind == FitnessSparseKL {
						k = 10
					}
					limit := int64(DefaultCacheMemory)
					if onDisk {
						limit = 0
					}
					var err error
					if cache, err = NewDenseCache(be, dense, pool, k, t.TempDir(), limit); err != nil {
						t.Fatal(err)
					}
					if onDisk != (cache.unmap != nil) {
						t.Fatalf("on disk %v, mapped %v", onDisk, cache.unmap != nil)
					}
				}
				ev, err := NewModelEvaluator(be, 1, dense, st, train.SelectionPreset(), kind, cache, pool, pool, nil)
				if err != nil {
					t.Fatal(err)
				}
				sc, err := ev.Evaluate(context.Background(), 0, []int{3, 0, 5, 2}, b, false)
				if err != nil {
					t.Fatal(err)
				}
				want := naiveFitness(be, kind, dense, cand, pool, b)
				if d := math.Abs(sc.Fitness-want) / math.Abs(want); d > 1e-5 || math.IsNaN(d) {
					t.Errorf("%s (budget %d, on disk %v): fitness %.10g, naive %.10g", kind, budget, onDisk, sc.Fitness, want)
				}
				// The dense model scores ~0 KL against its own cache, even on cut sequences.
				if kind != FitnessPPL {
					fs, ids := ev.fitSeqs(b)
					if f := ev.fit.score(be, dense, fs, ids); math.Abs(f) > 1e-6 {
						t.Errorf("%s of the dense model against its cache: %g", kind, f)
					}
				}
				if cache != nil {
					if err := cache.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// TestEvaluateTrainsFromScratchEachTime: scores depend only on the levels
// and the batch: the same candidate evaluated twice, before or after
// others, on one worker or two at once, gives bitwise the same fitness,
// and training changes it.
func TestEvaluateTrainsFromScratchEachTime(t *testing.T) {
	be := cpu.New()
	dense := tinyModel()
	st := scaleStitcher{dense}
	pool := randomPool(40, dense.Cfg.Vocab, 64, 4)
	var tp [][]int
	for _, s := range pool {
		if len(s) >= 2 {
			tp = append(tp, s)
		}
	}
	pool = tp // perplexity on the training data: training must lower it
	opts := train.SelectionPreset()
	opts.LR = 1e-3 // visible effect on a random model
	ev, err := NewModelEvaluator(be, 2, dense, st, opts, FitnessPPL, nil, pool, tp, nil)
	if err != nil {
		t.Fatal(err)
	}
	lens := func(p [][]int) []int {
		l := make([]int, len(p))
		for i, s := range p {
			l[i] = len(s)
		}
		return l
	}
	b := drawBatch(lens(tp), lens(pool), 300, 200, newStream(2, streamStage, 0, 0))
	lv := []int{2, 4, 1, 3}
	first, err := ev.Evaluate(context.Background(), 0, lv, b, true)
	if err != nil {
		t.Fatal(err)
	}
	if !(first.Fitness < first.Before) {
		t.Fatalf("fine-tuning toward the data did not lower the perplexity of its data: before %g, after %g", first.Before, first.Fitness)
	}
	if _, err := ev.Evaluate(context.Background(), 0, []int{5, 5, 5, 5}, b, false); err != nil {
		t.Fatal(err)
	}
	again, _ := ev.Evaluate(context.Background(), 0, lv, b, false)
	other, _ := ev.Evaluate(context.Background(), 1, lv, b, false)
	if again.Fitness != first.Fitness || other.Fitness != first.Fitness {
		t.Fatalf("fitness %v, again %v, on worker 1 %v", first.Fitness, again.Fitness, other.Fitness)
	}
	none := &Batch{Fit: b.Fit, FitTokens: b.FitTokens}
	untrained, _ := ev.Evaluate(context.Background(), 1, lv, none, false)
	if untrained.Fitness != first.Before {
		t.Fatalf("without training %v, before training %v", untrained.Fitness, first.Before)
	}
}
