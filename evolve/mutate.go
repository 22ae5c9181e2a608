package evolve

import (
	"fmt"
	"math"
	"slices"
)

// mutate returns a copy of parent changed by the reference's level-switch
// mutation (evo_struct_prune_search.py): the number of switches is
// min(U{1,3}, U{1,3}) (P = 5/9, 3/9, 1/9 for 1, 2, 3); each switch picks a
// group with probability proportional to its number of modules, then,
// uniformly and independently, one module of that group whose level can go
// down by step (level − step exists in the database) and one whose level can
// go up by step, both judged on the offspring as it stands, and moves the
// first down and the second up. The two may be the same module (a no-op
// switch). Every group's level sum is unchanged.
func (s *Space) mutate(parent []int, step int, r *rng) ([]int, int, error) {
	child := slices.Clone(parent)
	flips := min(r.between(1, 3), r.between(1, 3))
	down := make([]int, 0, len(parent))
	up := make([]int, 0, len(parent))
	for range flips {
		// random.choices(range(G), weights=sizes): one uniform draw over all
		// modules, mapped to its group by cumulative size.
		u := r.intn(len(parent))
		g := 0
		for acc := len(s.Members[0]); u >= acc; acc += len(s.Members[g]) {
			g++
		}
		down, up = down[:0], up[:0]
		for _, m := range s.Members[g] {
			if s.Has(m, child[m]-step) {
				down = append(down, m)
			}
			if s.Has(m, child[m]+step) {
				up = append(up, m)
			}
		}
		if len(down) == 0 || len(up) == 0 {
			return nil, 0, fmt.Errorf("evolve: group %s has no module whose level can move %s by %d",
				s.GroupNames[g], map[bool]string{true: "down", false: "up"}[len(down) == 0], step)
		}
		d := down[r.intn(len(down))]
		i := up[r.intn(len(up))]
		child[d] -= step
		child[i] += step
	}
	return child, flips, nil
}

// maxRejections bounds the redraws of duplicate offspring. The reference
// loops forever when the parent has fewer than λ distinct neighbours; this
// stops with an error instead.
const maxRejections = 100000

// offspring draws n distinct offspring of parent, none equal to it, from
// one stream (the reference's rejection loop).
func (s *Space) offspring(parent []int, n, step int, r *rng) (kids [][]int, switches []int, err error) {
	rejected := 0
	for len(kids) < n {
		c, f, err := s.mutate(parent, step, r)
		if err != nil {
			return nil, nil, err
		}
		dup := slices.Equal(c, parent)
		for _, k := range kids {
			dup = dup || slices.Equal(c, k)
		}
		if dup {
			if rejected++; rejected > maxRejections {
				return nil, nil, fmt.Errorf("evolve: cannot find %d distinct offspring of the parent (%d found after %d duplicates); lower --offspring", n, len(kids), rejected)
			}
			continue
		}
		kids = append(kids, c)
		switches = append(switches, f)
	}
	return kids, switches, nil
}

// randomInitial draws one configuration of a non-integer target level t,
// adapting EvoPress's initialisation (evo_quant_search.py) to the per-group
// invariant of DarwinLM: every module starts at ⌈t⌉, then, group by group,
// a uniformly chosen module whose level can go down by step is lowered until
// the group's level sum is round(t × group size). (The DarwinLM reference
// requires --initially_generated and --initial_tokens for a non-integer
// target but never uses them; it starts from int(t).)
func (s *Space) randomInitial(t float64, step int, r *rng) ([]int, error) {
	lv := s.Initial(int(math.Ceil(t)))
	for g, mem := range s.Members {
		want := int(math.Round(t * float64(len(mem))))
		sum := 0
		for _, m := range mem {
			sum += lv[m]
		}
		var down []int
		for sum > want {
			down = down[:0]
			for _, m := range mem {
				if s.Has(m, lv[m]-step) {
					down = append(down, m)
				}
			}
			if len(down) == 0 {
				return nil, fmt.Errorf("evolve: group %s cannot reach level sum %d", s.GroupNames[g], want)
			}
			d := down[r.intn(len(down))]
			lv[d] -= step
			sum -= step
		}
	}
	return lv, nil
}
