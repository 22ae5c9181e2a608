package evolve

import (
	"math"
	"sort"
)

// Piece is a sequence of a pool, used up to Len tokens (a prefix: the last
// sequence of a fitness minibatch is cut to make exactly the stage's
// token count).
type Piece struct{ Seq, Len int }

// Batch holds one stage's minibatches, shared by every candidate of the stage.
type Batch struct {
	Train       []int   // training-pool sequences, in training order (one optimizer step each)
	Fit         []Piece // fitness-pool pieces
	TrainTokens int     // Σ lengths of Train (≥ the stage's budget: whole sequences)
	FitTokens   int     // Σ Fit[i].Len (exactly the stage's budget)
}

// drawer samples pool sequences uniformly without repetition (a partial
// Fisher–Yates shuffle; the reference redraws repeated indices, which gives
// the same distribution).
type drawer struct {
	perm []int
	next int
	r    *rng
}

func newDrawer(n int, r *rng) *drawer {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return &drawer{perm: p, r: r}
}

func (d *drawer) draw() (int, bool) {
	if d.next >= len(d.perm) {
		return 0, false
	}
	j := d.next + d.r.intn(len(d.perm)-d.next)
	d.perm[d.next], d.perm[j] = d.perm[j], d.perm[d.next]
	d.next++
	return d.perm[d.next-1], true
}

// drawTrain draws whole training sequences until their total length is at
// least budget (the reference's `while training_token_used < num_train_tokens`).
func drawTrain(lens []int, budget int, r *rng) ([]int, int) {
	var out []int
	tok := 0
	d := newDrawer(len(lens), r)
	for tok < budget {
		i, ok := d.draw()
		if !ok {
			break // pool exhausted: Run checks pool sizes before any compute
		}
		out = append(out, i)
		tok += lens[i]
	}
	return out, tok
}

// drawFit draws fitness sequences until exactly budget tokens are reached,
// cutting the last one.
func drawFit(lens []int, budget int, r *rng) ([]Piece, int) {
	var out []Piece
	tok := 0
	d := newDrawer(len(lens), r)
	for tok < budget {
		i, ok := d.draw()
		if !ok {
			break
		}
		n := min(lens[i], budget-tok)
		out = append(out, Piece{i, n})
		tok += n
	}
	return out, tok
}

// drawBatch draws a stage's minibatches from its stream: training first,
// then fitness (the reference's order).
func drawBatch(trainLens, fitLens []int, trainBudget, fitBudget int, r *rng) *Batch {
	b := &Batch{}
	b.Train, b.TrainTokens = drawTrain(trainLens, trainBudget, r)
	b.Fit, b.FitTokens = drawFit(fitLens, fitBudget, r)
	return b
}

// rank orders candidates by fitness, lowest first; ties keep candidate
// order and NaN ranks last (NumPy's argsort leaves tie order unspecified).
func rank(fit []float64) []int {
	idx := make([]int, len(fit))
	for i := range idx {
		idx[i] = i
	}
	key := func(i int) float64 {
		if math.IsNaN(fit[i]) {
			return math.Inf(1)
		}
		return fit[i]
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ka, kb := key(idx[a]), key(idx[b])
		if ka != kb {
			return ka < kb
		}
		return math.IsNaN(fit[idx[b]]) && !math.IsNaN(fit[idx[a]])
	})
	return idx
}
