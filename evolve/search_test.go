package evolve

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// toyEval is a separable fitness Σ_m cost_m(level_m) with convex costs, plus
// optional batch-dependent noise. It also checks that every candidate of a
// stage sees the same batch.
type toyEval struct {
	a, b  []float64
	noise float64
	mu    sync.Mutex
	calls int
}

func (e *toyEval) cost(lv []int) float64 {
	f := 0.0
	for m, l := range lv {
		x := float64(l)
		f += e.a[m]*x*x + e.b[m]*x
	}
	return f
}

func (e *toyEval) Evaluate(ctx context.Context, worker int, lv []int, b *Batch, before bool) (Score, error) {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	f := e.cost(lv)
	if e.noise > 0 {
		h := 0
		for _, p := range b.Fit {
			h = h*31 + p.Seq*7 + p.Len
		}
		for i, l := range lv {
			h = h*17 + l*(i+1)
		}
		f += e.noise * float64(h%1000) / 1000
	}
	bef := math.NaN()
	if before {
		bef = f + 1
	}
	// "Training" lowers the fitness by a fixed amount per token.
	f -= 1e-6 * float64(b.TrainTokens)
	p, _ := e.Params(lv)
	return Score{Fitness: f, Before: bef, Params: p}, nil
}

func (e *toyEval) Params(lv []int) (int64, error) {
	n := int64(0)
	for _, l := range lv {
		n += int64(10-l) * 100
	}
	return n, nil
}

func newToy(n int) *toyEval {
	e := &toyEval{}
	for m := range n {
		// Distinct, positive convex costs: the optimum is unique.
		e.a = append(e.a, 0.05+0.37*float64((m*7)%11)/11)
		e.b = append(e.b, -0.3+0.11*float64((m*5)%13)/13)
	}
	return e
}

// optimum solves min Σ cost subject to each group's level sum, by dynamic
// programming over the modules of each group (independent of the search).
func optimum(s *Space, e *toyEval, sums []int, top func(m int) int) []int {
	out := make([]int, len(s.Names))
	for g, mem := range s.Members {
		type cell struct {
			f    float64
			from int
		}
		inf := math.Inf(1)
		best := []map[int]cell{{0: {0, 0}}}
		for _, m := range mem {
			next := map[int]cell{}
			for sum, c := range best[len(best)-1] {
				for l := 0; l <= top(m); l++ {
					x := float64(l)
					f := c.f + e.a[m]*x*x + e.b[m]*x
					if old, ok := next[sum+l]; !ok || f < old.f {
						next[sum+l] = cell{f, l}
					}
				}
			}
			best = append(best, next)
		}
		_ = inf
		sum := sums[g]
		for i := len(mem) - 1; i >= 0; i-- {
			l := best[i+1][sum].from
			out[mem[i]] = l
			sum -= l
		}
	}
	return out
}

func toyProblem(t testing.TB, e *toyEval) Problem {
	s := toySpace(t, 5, 10, 8)
	lens := make([]int, 64)
	for i := range lens {
		lens[i] = 20 + (i*37)%50
	}
	return Problem{Space: s, TrainLens: lens, FitLens: lens, Eval: e}
}

func paperStages() []Stage {
	return []Stage{{8, 64, 100}, {4, 128, 500}, {2, 256, 1000}, {1, 512, 2000}}
}

// TestSearchFindsSeparableOptimum: on a noise-free separable fitness the
// search reaches the constrained optimum.
func TestSearchFindsSeparableOptimum(t *testing.T) {
	e := newToy(10)
	p := toyProblem(t, e)
	res, err := Search(context.Background(), p, Options{TargetLevel: 5, Offspring: 16, Stages: paperStages(),
		Generations: 150, StepSize: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := optimum(p.Space, e, []int{25, 25}, func(m int) int { return map[bool]int{true: 10, false: 8}[m < 5] })
	t.Logf("optimum %v (cost %.4f; uniform start %.4f)", want, e.cost(want), e.cost(p.Space.Initial(5)))
	if !slices.Equal(res.Levels, want) {
		t.Fatalf("search ended at %v (cost %.4f), optimum %v (cost %.4f)", res.Levels, e.cost(res.Levels), want, e.cost(want))
	}
	if got := p.Space.GroupSums(res.Levels); !slices.Equal(got, []int{25, 25}) {
		t.Fatalf("group sums %v", got)
	}
	// The parent's logged fitness is that of the optimum after the last
	// stage's "training".
	if math.Abs(res.Fitness-e.cost(want)) > 0.01 {
		t.Fatalf("fitness %v, cost %v", res.Fitness, e.cost(want))
	}
}

// TestSearchNonIntegerTarget: the best of the initial random configurations
// becomes the parent, with the target's level sums.
func TestSearchNonIntegerTarget(t *testing.T) {
	e := newToy(10)
	p := toyProblem(t, e)
	dir := t.TempDir()
	res, err := Search(context.Background(), p, Options{TargetLevel: 5.4, Offspring: 8, Stages: []Stage{{2, 64, 0}, {1, 128, 0}},
		Generations: 3, Seed: 2, InitiallyGenerated: 6, InitialTokens: 100, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Space.GroupSums(res.Levels); !slices.Equal(got, []int{27, 27}) {
		t.Fatalf("group sums %v, want 27 = 5.4·5", got)
	}
	cands, err := ReadCandidates(filepath.Join(dir, CandidatesFile))
	if err != nil {
		t.Fatal(err)
	}
	var init []CandidateRow
	for _, c := range cands {
		if c.Generation == -1 {
			init = append(init, c)
		}
	}
	if len(init) != 6 {
		t.Fatalf("%d initial rows, want 6", len(init))
	}
	best := init[0]
	for _, c := range init {
		if c.FitnessTokens != 100 || c.TrainTokens != 0 || c.Parent != -1 || c.Stage != 0 {
			t.Fatalf("initial row %+v", c)
		}
		if c.Fitness < best.Fitness {
			best = c
		}
	}
	gens, _ := ReadGenerations(filepath.Join(dir, GenerationsFile))
	if gens[0].Generation != -1 || gens[0].Candidate != best.Candidate || !best.Survived {
		t.Fatalf("initial parent %+v, best initial %+v", gens[0], best)
	}
}

// TestSearchLogRows checks the rows of one generation against the
// reference's schedule: λ offspring in stage 0, survivors halving, the
// parent joining before the last stage, shared batches.
func TestSearchLogRows(t *testing.T) {
	e := newToy(10)
	p := toyProblem(t, e)
	dir := t.TempDir()
	if _, err := Search(context.Background(), p, Options{TargetLevel: 5, Offspring: 16, Stages: paperStages(),
		Generations: 2, Seed: 3, FitnessBefore: true, LogDir: dir, EvalEvery: 1}); err != nil {
		t.Fatal(err)
	}
	cands, err := ReadCandidates(filepath.Join(dir, CandidatesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != 2*(16+8+4+3) {
		t.Fatalf("%d rows, want %d", len(cands), 2*(16+8+4+3))
	}
	gens, _ := ReadGenerations(filepath.Join(dir, GenerationsFile))
	if len(gens) != 3 || gens[0].Generation != -1 || gens[0].Fitness != nil {
		t.Fatalf("generations %+v", gens)
	}
	for g := range int64(2) {
		var st [4][]CandidateRow
		for _, c := range cands {
			if c.Generation == g {
				st[c.Stage] = append(st[c.Stage], c)
			}
		}
		for s, n := range []int{16, 8, 4, 3} {
			if len(st[s]) != n {
				t.Fatalf("generation %d stage %d: %d rows, want %d", g, s, len(st[s]), n)
			}
			surv := 0
			for _, c := range st[s] {
				if c.Survived {
					surv++
				}
				if c.FitnessTokens != int64(paperStages()[s].FitnessTokens) || c.TrainTokens < int64(paperStages()[s].TrainTokens) ||
					c.TrainTokens != st[s][0].TrainTokens {
					t.Fatalf("stage %d row %+v", s, c)
				}
				if c.FitnessBeforeTrain == nil {
					t.Fatal("fitness_before_train is null with FitnessBefore")
				}
			}
			if want := []int{8, 4, 2, 1}[s]; surv != want {
				t.Fatalf("stage %d: %d survivors", s, surv)
			}
		}
		// Stage 0 ids are consecutive; the parent appears only in the last stage.
		prevParent := gens[g].Candidate
		for i, c := range st[0] {
			if c.Candidate != 1+g*16+int64(i) || c.Parent != prevParent || c.Switches < 1 || c.Switches > 3 {
				t.Fatalf("stage 0 row %d: %+v", i, c)
			}
		}
		last := st[3][2]
		if last.Candidate != prevParent || last.Parent != -1 || last.Switches != 0 {
			t.Fatalf("last-stage parent row %+v", last)
		}
		// The survivors of a stage are the next stage's candidates, in fitness order.
		for s := 1; s < 4; s++ {
			var kept []CandidateRow
			for _, c := range st[s-1] {
				if c.Survived {
					kept = append(kept, c)
				}
			}
			slices.SortStableFunc(kept, func(a, b CandidateRow) int {
				if a.Fitness < b.Fitness {
					return -1
				} else if a.Fitness > b.Fitness {
					return 1
				}
				return 0
			})
			for i, k := range kept {
				if st[s][i].Candidate != k.Candidate {
					t.Fatalf("generation %d stage %d candidate %d is %d, want survivor %d", g, s, i, st[s][i].Candidate, k.Candidate)
				}
			}
		}
		var winner CandidateRow
		for _, c := range st[3] {
			if c.Survived {
				winner = c
			}
		}
		if gens[g+1].Candidate != winner.Candidate || *gens[g+1].Fitness != winner.Fitness {
			t.Fatalf("generation %d parent %+v, last-stage survivor %+v", g, gens[g+1], winner)
		}
	}
}

func stripSeconds[T any](rows []T, zero func(*T)) []T {
	out := slices.Clone(rows)
	for i := range out {
		zero(&out[i])
	}
	return out
}

// TestSearchResumeReproduces: a run stopped after a few generations and
// resumed (with two workers) logs exactly the rows of an uninterrupted run,
// wall times apart, and ends at the same parent.
func TestSearchResumeReproduces(t *testing.T) {
	opts := func(dir string) Options {
		return Options{TargetLevel: 5, Offspring: 8, Stages: []Stage{{4, 64, 100}, {2, 128, 200}, {1, 256, 300}},
			Generations: 12, Seed: 9, LogDir: dir, EvalEvery: 4}
	}
	e := newToy(10)
	e.noise = 0.5
	a := t.TempDir()
	resA, err := Search(context.Background(), toyProblem(t, e), opts(a))
	if err != nil {
		t.Fatal(err)
	}
	b := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	o := opts(b)
	o.AfterGeneration = func(r GenerationRow) {
		if r.Generation == 4 {
			cancel()
		}
	}
	if _, err := Search(ctx, toyProblem(t, e), o); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: err = %v", err)
	}
	o = opts(b)
	o.Resume, o.Workers = true, 2
	e.calls = 0
	resB, err := Search(context.Background(), toyProblem(t, e), o)
	if err != nil {
		t.Fatal(err)
	}
	if resB.Resumed != 5 || e.calls != 7*(8+4+3) {
		t.Fatalf("resumed at %d with %d evaluations", resB.Resumed, e.calls)
	}
	if !slices.Equal(resA.Levels, resB.Levels) || resA.Fitness != resB.Fitness || resA.RunID != resB.RunID {
		t.Fatalf("uninterrupted %+v, resumed %+v", resA, resB)
	}
	for _, f := range []string{CandidatesFile, GenerationsFile} {
		_ = f
	}
	ca, _ := ReadCandidates(filepath.Join(a, CandidatesFile))
	cb, _ := ReadCandidates(filepath.Join(b, CandidatesFile))
	zc := func(r *CandidateRow) { r.Seconds = 0 }
	if !equalRows(stripSeconds(ca, zc), stripSeconds(cb, zc)) {
		t.Fatal("candidates.parquet differs between the uninterrupted and the resumed run")
	}
	ga, _ := ReadGenerations(filepath.Join(a, GenerationsFile))
	gb, _ := ReadGenerations(filepath.Join(b, GenerationsFile))
	zg := func(r *GenerationRow) { r.Seconds = 0 }
	if !equalRows(stripSeconds(ga, zg), stripSeconds(gb, zg)) {
		t.Fatal("generations.parquet differs between the uninterrupted and the resumed run")
	}
	// Resuming a finished run does nothing and returns the same result;
	// growing --generations continues it.
	e.calls = 0
	o = opts(b)
	o.Resume, o.Generations = true, 14
	resC, err := Search(context.Background(), toyProblem(t, e), o)
	if err != nil || resC.Resumed != 12 || e.calls != 2*15 || resC.RunID != resA.RunID {
		t.Fatalf("extended run: %+v, %v, %d evaluations", resC, err, e.calls)
	}
}

func equalRows[T any](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !deepEqual(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestSearchBadInput(t *testing.T) {
	e := newToy(10)
	base := func() Options {
		return Options{TargetLevel: 5, Offspring: 16, Stages: paperStages(), Generations: 1, Seed: 1}
	}
	for _, c := range []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Stages[3].Survivors = 2; o.Stages[2].Survivors = 2 }, "last stage must keep exactly 1"},
		{func(o *Options) { o.Stages[1].Survivors = 9 }, "more than the 8 of stage 1"},
		{func(o *Options) { o.Offspring = 4 }, "only 4 offspring"},
		{func(o *Options) { o.TargetLevel = 11 }, "outside the database"},
		{func(o *Options) { o.TargetLevel = 5.1 }, "cannot be reached"},
		{func(o *Options) { o.TargetLevel = 5.2 }, "--initially-generated"},
		{func(o *Options) { o.Stages[3].FitnessTokens = 1 << 20 }, "fitness pool holds"},
		{func(o *Options) { o.Stages[3].TrainTokens = 1 << 20 }, "training pool holds"},
		{func(o *Options) { o.Stages = nil }, "at least one selection stage"},
	} {
		o := base()
		c.mod(&o)
		e.calls = 0
		_, err := Search(context.Background(), toyProblem(t, e), o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
		if e.calls != 0 {
			t.Errorf("%q: %d evaluations before the error", c.want, e.calls)
		}
	}

	// A log folder of another run without --resume; --resume with a
	// changed setting names it.
	dir := t.TempDir()
	o := base()
	o.LogDir = dir
	if _, err := Search(context.Background(), toyProblem(t, e), o); err != nil {
		t.Fatal(err)
	}
	e.calls = 0
	if _, err := Search(context.Background(), toyProblem(t, e), o); err == nil || !strings.Contains(err.Error(), "pass --resume") {
		t.Errorf("reused log: err = %v", err)
	}
	o.Resume, o.Offspring = true, 12
	if _, err := Search(context.Background(), toyProblem(t, e), o); err == nil || !strings.Contains(err.Error(), "offspring (log: 16, now: 12)") {
		t.Errorf("changed setting: err = %v", err)
	}
	o.Offspring, o.Settings = 16, map[string]any{"model": "other"}
	if _, err := Search(context.Background(), toyProblem(t, e), o); err == nil || !strings.Contains(err.Error(), `model (log: null, now: "other")`) {
		t.Errorf("changed model: err = %v", err)
	}
	if e.calls != 0 {
		t.Errorf("%d evaluations before the log errors", e.calls)
	}
	// A folder with log files but no settings is foreign.
	d2 := t.TempDir()
	os.WriteFile(filepath.Join(d2, CandidatesFile), []byte("x"), 0o644)
	o = base()
	o.LogDir = d2
	if _, err := Search(context.Background(), toyProblem(t, e), o); err == nil || !strings.Contains(err.Error(), "not a search log") {
		t.Errorf("foreign folder: err = %v", err)
	}
}
