package shear

import (
	"math/rand/v2"
	"sort"
)

// maskKinds are the four gate kinds in a fixed order (LLM-Shearing's
// pruning_modules [layer, head, intermediate, hidden]).
var maskKinds = [4]string{"layer", "head", "intermediate", "hidden"}

// rowsOf gives, for the shape s, the number of rows and the row size of
// each kind: one gate per layer (one row), per head per layer (a row per
// layer), per neuron per layer, per hidden unit (one row).
func rowsOf(s Shape) [4][2]int {
	return [4][2]int{{1, s.Layers}, {s.Layers, s.Heads}, {s.Layers, s.Inter}, {1, s.Hidden}}
}

// targetCounts are the units per row the target keeps, in maskKinds order.
func targetCounts(t Shape) [4]int { return [4]int{t.Layers, t.Heads, t.Inter, t.Hidden} }

// kinds returns the gate slices of g in maskKinds order.
func kinds[F float32 | float64](g *Gates[F]) [4][]F {
	return [4][]F{g.Layer, g.Head, g.Neuron, g.Hidden}
}

// Lagrangian is LLM-Shearing's constraint with a target model: for each
// mask kind k, with ŝ_r = 1 − Σ_row P(z≠0)/size the expected sparsity of
// row r and t_k the (warmed-up) target sparsity,
//
//	L = Σ_k mean_r [λ1_k·(ŝ_r − t_k) + λ2_k·(ŝ_r − t_k)²].
//
// It returns L, the gradient with respect to every log α (in gl, added)
// and to the multipliers (dlam[k] = {∂L/∂λ1_k, ∂L/∂λ2_k}, overwritten).
// frac ∈ [0, 1] is the warm-up fraction: t_k = frac·(1 − target/size).
func Lagrangian(base, target Shape, logAlpha *Gates[float64], lam [4][2]float64, frac float64, gl *Gates[float64]) (loss float64, dlam [4][2]float64) {
	rs, tc := rowsOf(base), targetCounts(target)
	la, g := kinds(logAlpha), kinds(gl)
	for k := range maskKinds {
		nRows, size := rs[k][0], rs[k][1]
		t := frac * (1 - float64(tc[k])/float64(size))
		for r := 0; r < nRows; r++ {
			row := la[k][r*size : (r+1)*size]
			var sum float64
			for _, a := range row {
				p, _ := ExpectedScore(a)
				sum += p
			}
			gap := 1 - sum/float64(size) - t
			loss += (lam[k][0]*gap + lam[k][1]*gap*gap) / float64(nRows)
			dlam[k][0] += gap / float64(nRows)
			dlam[k][1] += gap * gap / float64(nRows)
			// ∂/∂ŝ = λ1 + 2λ2·gap; ∂ŝ/∂logα_u = −p'_u/size.
			c := (lam[k][0] + 2*lam[k][1]*gap) / float64(nRows) / float64(size)
			for u, a := range row {
				_, dp := ExpectedScore(a)
				g[k][r*size+u] -= c * dp
			}
		}
	}
	return loss, dlam
}

// ExpectedCounts are the expected numbers of kept units, Σ P(z≠0), per row
// averaged over the rows of each kind (layers, heads per layer, neurons per
// layer, hidden units), in maskKinds order; worst is the largest relative
// distance |count − target|/target of any single row.
func ExpectedCounts(base, target Shape, logAlpha *Gates[float64]) (mean [4]float64, worst float64) {
	rs, tc := rowsOf(base), targetCounts(target)
	la := kinds(logAlpha)
	for k := range maskKinds {
		nRows, size := rs[k][0], rs[k][1]
		for r := 0; r < nRows; r++ {
			var sum float64
			for _, a := range la[k][r*size : (r+1)*size] {
				p, _ := ExpectedScore(a)
				sum += p
			}
			mean[k] += sum / float64(nRows)
			worst = max(worst, abs(sum-float64(tc[k]))/float64(tc[k]))
		}
	}
	return mean, worst
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// sampleGates draws training gates z and dz/dlog α for every unit from rng.
func sampleGates(logAlpha *Gates[float64], rng *rand.Rand, z, dz *Gates[float64]) {
	la, zs, ds := kinds(logAlpha), kinds(z), kinds(dz)
	for k := range la {
		for i, a := range la[k] {
			zs[k][i], ds[k][i] = SampleGate(a, rng.Float64())
		}
	}
}

// DeterministicGates are the gates of the end of pruning (LLM-Shearing's
// deterministic_z with a target model): in each row, the size − target
// units with the smallest σ(log α/β·0.8) get 0 and the others keep that
// soft value. Ties are broken by the lower index kept, so the result is
// deterministic.
func DeterministicGates(base, target Shape, logAlpha *Gates[float64]) *Gates[float64] {
	rs, tc := rowsOf(base), targetCounts(target)
	z := NewGates[float64](base, 0)
	la, zs := kinds(logAlpha), kinds(z)
	for k := range maskKinds {
		nRows, size := rs[k][0], rs[k][1]
		for r := 0; r < nRows; r++ {
			row := la[k][r*size : (r+1)*size]
			idx := make([]int, size)
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool { return softGate(row[idx[a]]) > softGate(row[idx[b]]) })
			for _, i := range idx[:tc[k]] {
				zs[k][r*size+i] = softGate(row[i])
			}
		}
	}
	return z
}
