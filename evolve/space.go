package evolve

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

// Space is the search space: one level per prunable module. Modules are in
// the order of the level-configuration file (all mlp.down_proj modules of
// layers 0…L−1, then all self_attn.o_proj modules), and levels are integers,
// 0 = dense; higher levels remove more.
type Space struct {
	Names []string // module names, level-configuration order
	// Group is the group of each module. Mutations move levels only inside
	// a group, so each group's level sum is invariant.
	Group []int
	// GroupNames names each group (e.g. "mlp.down_proj").
	GroupNames []string
	// Members lists the modules of each group, in module order.
	Members [][]int
	// Has reports whether a module has a given level in the database.
	Has func(module, level int) bool
}

var layerIndex = regexp.MustCompile(`\.\d+\.`)

// kindOf is the reference's group_layers(..., "name") key: the module name
// with its layer index removed ("model.layers.3.mlp.down_proj" →
// "model.layers.mlp.down_proj"); the group's display name is the part
// after the layer index.
func kindOf(name string) (key, display string) {
	loc := layerIndex.FindStringIndex(name)
	if loc == nil {
		return name, name
	}
	return name[:loc[0]] + "." + name[loc[1]:], name[loc[1]:]
}

// NewSpace groups modules by kind, groups numbered in the order their kind
// is first seen (group 0 = down_proj, group 1 = o_proj for a database in
// file order, as in the reference). has reports the database's levels.
func NewSpace(names []string, has func(module, level int) bool) (*Space, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("evolve: the search space has no modules")
	}
	s := &Space{Names: names, Group: make([]int, len(names)), Has: has}
	idx := map[string]int{}
	seen := map[string]bool{}
	for m, n := range names {
		if seen[n] {
			return nil, fmt.Errorf("evolve: module %q is listed twice", n)
		}
		seen[n] = true
		key, disp := kindOf(n)
		g, ok := idx[key]
		if !ok {
			g = len(s.Members)
			idx[key] = g
			s.Members = append(s.Members, nil)
			s.GroupNames = append(s.GroupNames, disp)
		}
		s.Group[m] = g
		s.Members[g] = append(s.Members[g], m)
	}
	return s, nil
}

// Initial is the parent of an integer target level: every module at level t.
func (s *Space) Initial(t int) []int {
	l := make([]int, len(s.Names))
	for i := range l {
		l[i] = t
	}
	return l
}

// GroupSums returns the level sum of every group.
func (s *Space) GroupSums(levels []int) []int {
	sums := make([]int, len(s.Members))
	for m, l := range levels {
		sums[s.Group[m]] += l
	}
	return sums
}

// CheckTarget validates a target level against the space before any
// compute: an integer target must exist in every module and leave every
// group a move down and a move up (else no mutation is possible); a
// non-integer target must give every group an integer level sum
// (target × group size) reachable from ⌈target⌉ in steps of step.
func (s *Space) CheckTarget(target float64, step int) error {
	if step < 1 {
		return fmt.Errorf("--step-size must be at least 1, got %d", step)
	}
	if math.IsNaN(target) || math.IsInf(target, 0) || target < 0 {
		return fmt.Errorf("--target-level %v is not a non-negative number", target)
	}
	hi := int(math.Ceil(target))
	for m, n := range s.Names {
		if !s.Has(m, hi) || !s.Has(m, int(math.Floor(target))) {
			return fmt.Errorf("--target-level %v is outside the database: module %s has no level %d (levels %s)",
				target, n, hi, s.levelRange(m))
		}
	}
	if target == math.Trunc(target) {
		return s.checkMoves(s.Initial(int(target)), step, fmt.Sprintf("--target-level %v", target))
	}
	for g, mem := range s.Members {
		want := target * float64(len(mem))
		sum := math.Round(want)
		if math.Abs(want-sum) > 1e-9 {
			lo := math.Floor(want) / float64(len(mem))
			up := math.Ceil(want) / float64(len(mem))
			return fmt.Errorf("--target-level %v cannot be reached: group %s has %d modules, so its level sum would be %g, not an integer (nearest reachable targets: %g and %g)",
				target, s.GroupNames[g], len(mem), want, lo, up)
		}
		if (hi*len(mem)-int(sum))%step != 0 {
			return fmt.Errorf("--target-level %v cannot be reached with --step-size %d: group %s needs its level sum lowered by %d from %d·%d",
				target, step, s.GroupNames[g], hi*len(mem)-int(sum), hi, len(mem))
		}
	}
	return nil
}

// checkMoves verifies that every group of levels has a module that can go
// down by step and one that can go up by step.
func (s *Space) checkMoves(levels []int, step int, what string) error {
	for g, mem := range s.Members {
		down, up := false, false
		for _, m := range mem {
			down = down || s.Has(m, levels[m]-step)
			up = up || s.Has(m, levels[m]+step)
		}
		if !down || !up {
			dir := "down"
			if down {
				dir = "up"
			}
			return fmt.Errorf("%s leaves no mutation possible: no module of group %s can move %s by --step-size %d (levels %s)",
				what, s.GroupNames[g], dir, step, s.levelRange(mem[0]))
		}
	}
	return nil
}

// levelRange describes a module's levels, e.g. "0…10".
func (s *Space) levelRange(m int) string {
	var have []int
	for l := 0; l <= 4096; l++ {
		if s.Has(m, l) {
			have = append(have, l)
		}
	}
	if len(have) == 0 {
		return "none"
	}
	contiguous := have[len(have)-1]-have[0] == len(have)-1
	if contiguous {
		return fmt.Sprintf("%d…%d", have[0], have[len(have)-1])
	}
	parts := make([]string, len(have))
	for i, l := range have {
		parts[i] = fmt.Sprint(l)
	}
	return strings.Join(parts, ",")
}
