package prune

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// LevelSchedule returns the units removed at levels 0..k of a module with
// `units` units: level ℓ removes round(ℓ·units/k), rounded to a multiple of
// `multiple` (the last level removes everything). With more levels than
// units, neighbouring levels can be equal.
func LevelSchedule(units, k, multiple int) ([]int, error) {
	if k < 1 {
		return nil, fmt.Errorf("--levels must be at least 1, got %d", k)
	}
	if multiple < 1 {
		return nil, fmt.Errorf("--neuron-multiple must be at least 1, got %d", multiple)
	}
	s := make([]int, k+1)
	for l := 1; l < k; l++ {
		v := float64(l) * float64(units) / float64(k)
		s[l] = int(math.Round(v/float64(multiple))) * multiple
		s[l] = min(s[l], units)
	}
	s[k] = units
	return s, nil
}

// DefaultNeuronMultiple is the reference's rounding of MLP level steps: 32
// neurons when the MLP has at least 2048 of them, else 1.
func DefaultNeuronMultiple(inter int) int {
	if inter >= 2048 {
		return 32
	}
	return 1
}

// ParseCountList parses a comma-separated list of non-negative integers
// (the --attn-removed / --mlp-removed flags). flag names the flag in errors.
func ParseCountList(s, flag string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s: %q is not a non-negative integer", flag, strings.TrimSpace(f))
		}
		out = append(out, v)
	}
	return out, nil
}

// checkList validates an explicit schedule for a module of `units` units.
func checkList(s []int, units int, flag, what string) error {
	if err := checkSchedule(s, units); err != nil {
		return fmt.Errorf("%s: %v (%s)", flag, err, what)
	}
	return nil
}
