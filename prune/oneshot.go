package prune

import (
	"fmt"
	"math"
)

// Uniform puts every module at the same level.
func Uniform(db *Database, level int) LevelConfig {
	c := db.Template()
	for i := range c.Levels {
		c.Levels[i] = level
	}
	return c
}

// dpMaxStates bounds the budget axis of the dynamic program.
const dpMaxStates = 1 << 18

// DP allocates levels by dynamic programming (ZipLM/EvoPress-style): it
// minimises the sum over modules of the level's OBS error, normalised by the
// module's error at its last level (everything removed, = the module's
// whole output energy), subject to the stitched model having at most
// targetParams parameters. Parameters are counted in quanta (the gcd of all
// level sizes, or coarser for huge models, rounding every module's size up),
// so the result never exceeds the target.
func DP(db *Database, targetParams int64) (LevelConfig, error) {
	M := db.NumModules()
	for ci := 0; ci < M; ci++ {
		if db.NumLevels(ci) > 127 {
			return LevelConfig{}, fmt.Errorf("dp: module %s has %d levels; at most 127 are supported", db.Module(ci).Name, db.NumLevels(ci))
		}
	}
	fixed := db.Man.TotalParams
	for ci := 0; ci < M; ci++ {
		fixed -= db.Module(ci).Levels[0].Params
	}
	budget := targetParams - fixed
	// The smallest model (every module at its last level) must fit.
	minP := fixed
	for ci := 0; ci < M; ci++ {
		lv := db.Module(ci).Levels
		minP += lv[len(lv)-1].Params
	}
	if targetParams < minP {
		return LevelConfig{}, fmt.Errorf("dp: target %d parameters is below the smallest model the database can stitch (%d)", targetParams, minP)
	}
	// Quantum: gcd of all sizes, coarsened to keep the table small.
	var g int64
	total := int64(0)
	for ci := 0; ci < M; ci++ {
		lv := db.Module(ci).Levels
		total += lv[0].Params
		for _, l := range lv {
			g = gcd(g, l.Params)
		}
	}
	if g == 0 {
		g = 1
	}
	q := g
	if total/q > dpMaxStates {
		q = (total + dpMaxStates - 1) / dpMaxStates
	}
	up := func(p int64) int { return int((p + q - 1) / q) }
	B := int(min(budget, total) / q)
	inf := math.Inf(1)
	cost := make([]float64, B+1) // cost[b]: min error with quanta used ≤ b... exactly b
	for b := range cost {
		cost[b] = inf
	}
	cost[0] = 0
	choice := make([][]int8, M)
	next := make([]float64, B+1)
	for ci := 0; ci < M; ci++ {
		lv := db.Module(ci).Levels
		norm := lv[len(lv)-1].Error
		if !(norm > 0) {
			norm = 1
		}
		for b := range next {
			next[b] = inf
		}
		ch := make([]int8, B+1)
		for l := range lv {
			w := up(lv[l].Params)
			e := lv[l].Error / norm
			for b := w; b <= B; b++ {
				if c := cost[b-w] + e; c < next[b] {
					next[b], ch[b] = c, int8(l)
				}
			}
		}
		choice[ci] = ch
		cost, next = next, cost
	}
	best := -1
	for b := 0; b <= B; b++ {
		if cost[b] < inf && (best < 0 || cost[b] < cost[best]) {
			best = b
		}
	}
	if best < 0 {
		return LevelConfig{}, fmt.Errorf("dp: no configuration fits %d parameters", targetParams)
	}
	cfg := db.Template()
	b := best
	for ci := M - 1; ci >= 0; ci-- {
		l := int(choice[ci][b])
		cfg.Levels[ci] = l
		b -= up(db.Module(ci).Levels[l].Params)
	}
	if p, _ := db.Params(cfg); p > targetParams {
		return LevelConfig{}, fmt.Errorf("dp: internal error: %d parameters exceed the target %d", p, targetParams)
	}
	return cfg, nil
}

// PrunableParams is the parameter count of the prunable modules of the
// dense model (attention q/k/v/o and MLP gate/up/down of every layer).
func (db *Database) PrunableParams() int64 {
	n := int64(0)
	for ci := 0; ci < db.NumModules(); ci++ {
		n += db.Module(ci).Levels[0].Params
	}
	return n
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
