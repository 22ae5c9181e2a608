package evolve

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// toySpace has L layers' down_proj then o_proj modules; module m has levels
// 0…maxLevel(m).
func toySpace(t testing.TB, layers, mlpMax, attnMax int) *Space {
	t.Helper()
	var names []string
	for i := range layers {
		names = append(names, fmt.Sprintf("model.layers.%d.mlp.down_proj", i))
	}
	for i := range layers {
		names = append(names, fmt.Sprintf("model.layers.%d.self_attn.o_proj", i))
	}
	s, err := NewSpace(names, func(m, l int) bool {
		top := mlpMax
		if m >= layers {
			top = attnMax
		}
		return l >= 0 && l <= top
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSpaceGroupsByKind(t *testing.T) {
	s := toySpace(t, 3, 10, 8)
	if !slices.Equal(s.GroupNames, []string{"mlp.down_proj", "self_attn.o_proj"}) {
		t.Fatalf("group names %v", s.GroupNames)
	}
	if !slices.Equal(s.Members[0], []int{0, 1, 2}) || !slices.Equal(s.Members[1], []int{3, 4, 5}) {
		t.Fatalf("members %v", s.Members)
	}
	// Interleaved names still group by kind, groups in first-seen order.
	s2, err := NewSpace([]string{"model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.o_proj"}, func(int, int) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s2.Group, []int{0, 1, 0}) {
		t.Fatalf("groups %v", s2.Group)
	}
	if _, err := NewSpace([]string{"a", "a"}, nil); err == nil {
		t.Fatal("duplicate module accepted")
	}
}

func TestCheckTarget(t *testing.T) {
	s := toySpace(t, 4, 10, 8)
	for _, c := range []struct {
		target float64
		step   int
		want   string // "" = ok
	}{
		{5, 1, ""},
		{7, 1, ""},
		{8, 1, "no module of group self_attn.o_proj can move up"},
		{9, 1, "outside the database: module model.layers.0.self_attn.o_proj has no level 9 (levels 0…8)"},
		{11, 1, "outside the database"},
		{-1, 1, "not a non-negative number"},
		{0, 1, "no module of group mlp.down_proj can move down"},
		{5.25, 1, ""}, // 4 modules per group: sum 21
		{5.3, 1, "cannot be reached: group mlp.down_proj has 4 modules"}, // 21.2
		{5.5, 4, "cannot be reached with --step-size 4"},
		{5, 0, "--step-size must be at least 1"},
	} {
		err := s.CheckTarget(c.target, c.step)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("target %v: unexpected error %v", c.target, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("target %v step %d: error %v, want it to contain %q", c.target, c.step, err, c.want)
		}
	}
}

// TestMutationInvariants: over 10⁵ random draws (chained, so levels wander
// far from the start) every group's level sum is kept and every level stays
// in the database.
func TestMutationInvariants(t *testing.T) {
	s := toySpace(t, 6, 10, 8)
	// Uneven levels: module 7 (o_proj) has only 0…3.
	has := s.Has
	s.Has = func(m, l int) bool { return has(m, l) && (m != 7 || l <= 3) }
	cur := s.Initial(3)
	cur[0], cur[1], cur[2] = 9, 0, 6 // start at both bounds
	want := s.GroupSums(cur)
	r := newStream(42, streamOffspring, 0, 0)
	flips := [4]int{}
	for i := range 100000 {
		c, f, err := s.mutate(cur, 1, r)
		if err != nil {
			t.Fatal(err)
		}
		flips[f]++
		if got := s.GroupSums(c); !slices.Equal(got, want) {
			t.Fatalf("draw %d: group sums %v, want %v", i, got, want)
		}
		for m, l := range c {
			if !s.Has(m, l) {
				t.Fatalf("draw %d: module %d at level %d, not in the database", i, m, l)
			}
		}
		cur = c
	}
	// min(U{1,3}, U{1,3}): 5/9, 3/9, 1/9.
	for k, p := range []float64{0, 5.0 / 9, 3.0 / 9, 1.0 / 9} {
		if k == 0 {
			continue
		}
		got := float64(flips[k]) / 1e5
		if sd := math.Sqrt(p * (1 - p) / 1e5); math.Abs(got-p) > 5*sd {
			t.Errorf("P(%d switches) = %.4f, want %.4f ± %.4f", k, got, p, 5*sd)
		}
	}
}

// exactOffspring enumerates the reference's mutation exactly (an
// independent, slow implementation): the probability of every offspring of
// parent.
func exactOffspring(s *Space, parent []int, step int) map[string]float64 {
	out := map[string]float64{}
	var rec func(c []int, left int, p float64)
	rec = func(c []int, left int, p float64) {
		if left == 0 {
			out[fmt.Sprint(c)] += p
			return
		}
		n := len(c)
		for g, mem := range s.Members {
			pg := float64(len(mem)) / float64(n)
			var down, up []int
			for _, m := range mem {
				if s.Has(m, c[m]-step) {
					down = append(down, m)
				}
				if s.Has(m, c[m]+step) {
					up = append(up, m)
				}
			}
			_ = g
			for _, d := range down {
				for _, u := range up {
					nc := slices.Clone(c)
					nc[d] -= step
					nc[u] += step
					rec(nc, left-1, p*pg/float64(len(down)*len(up)))
				}
			}
		}
	}
	for k, pk := range map[int]float64{1: 5.0 / 9, 2: 3.0 / 9, 3: 1.0 / 9} {
		rec(slices.Clone(parent), k, pk)
	}
	return out
}

// TestMutationDistribution compares the empirical distribution of offspring
// with the exact one, on a space with groups of sizes 2 and 3 and levels at
// the bounds.
func TestMutationDistribution(t *testing.T) {
	names := []string{"model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj",
		"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj", "model.layers.2.self_attn.o_proj"}
	s, err := NewSpace(names, func(m, l int) bool { return l >= 0 && l <= 2 })
	if err != nil {
		t.Fatal(err)
	}
	parent := []int{0, 2, 1, 0, 2}
	exact := exactOffspring(s, parent, 1)
	total := 0.0
	for _, p := range exact {
		total += p
	}
	if math.Abs(total-1) > 1e-12 {
		t.Fatalf("exact probabilities sum to %v", total)
	}
	const n = 200000
	r := newStream(7, streamOffspring, 3, 0)
	count := map[string]int{}
	for range n {
		c, _, err := s.mutate(parent, 1, r)
		if err != nil {
			t.Fatal(err)
		}
		count[fmt.Sprint(c)]++
	}
	for k := range count {
		if _, ok := exact[k]; !ok {
			t.Fatalf("offspring %s is impossible", k)
		}
	}
	for k, p := range exact {
		got := float64(count[k]) / n
		if sd := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*sd+1e-9 {
			t.Errorf("offspring %s: frequency %.5f, exact %.5f", k, got, p)
		}
	}
}

func TestOffspringDistinct(t *testing.T) {
	s := toySpace(t, 4, 10, 8)
	parent := s.Initial(5)
	kids, sw, err := s.offspring(parent, 16, 1, newStream(1, streamOffspring, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 16 || len(sw) != 16 {
		t.Fatalf("%d offspring", len(kids))
	}
	for i, k := range kids {
		if slices.Equal(k, parent) {
			t.Fatalf("offspring %d equals the parent", i)
		}
		for j := range i {
			if slices.Equal(k, kids[j]) {
				t.Fatalf("offspring %d equals offspring %d", i, j)
			}
		}
	}
	// One group of two modules at levels (1, 1) in 0…2 has exactly two
	// neighbours: asking for three must fail, not hang.
	s2, _ := NewSpace([]string{"model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"}, func(m, l int) bool { return l >= 0 && l <= 2 })
	if _, _, err := s2.offspring([]int{1, 1}, 3, 1, newStream(1, streamOffspring, 0, 0)); err == nil || !strings.Contains(err.Error(), "distinct offspring") {
		t.Fatalf("err = %v", err)
	}
	if k, _, err := s2.offspring([]int{1, 1}, 2, 1, newStream(1, streamOffspring, 0, 0)); err != nil || len(k) != 2 {
		t.Fatalf("two neighbours: %v %v", k, err)
	}
}

func TestRandomInitial(t *testing.T) {
	s := toySpace(t, 4, 10, 8)
	r := newStream(3, streamInit, -1, 0)
	for range 1000 {
		lv, err := s.randomInitial(5.25, 1, r)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.GroupSums(lv); !slices.Equal(got, []int{21, 21}) {
			t.Fatalf("sums %v", got)
		}
		for m, l := range lv {
			if l < 0 || l > 6 {
				t.Fatalf("module %d level %d (start is 6, only decreases)", m, l)
			}
		}
	}
}
