package prune

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// obsProblem is a random weight and the activations X [cols × n] whose
// Hessian H = (2/n)·X Xᵀ the pass sees.
type obsProblem struct {
	rows, cols, n int
	w             []float32
	x             *mat.Dense // [cols × n]
	h             []float64
}

func newOBSProblem(seed uint64, rows, cols, n int, deadCol int) *obsProblem {
	r := rand.New(rand.NewPCG(seed, 3))
	p := &obsProblem{rows: rows, cols: cols, n: n, w: make([]float32, rows*cols), x: mat.NewDense(cols, n, nil)}
	for i := range p.w {
		p.w[i] = float32(r.NormFloat64())
	}
	// Correlated inputs with different scales, so that choices are not trivial.
	mix := make([]float64, cols*cols)
	for i := range mix {
		mix[i] = r.NormFloat64() * 0.4
	}
	for c := 0; c < cols; c++ {
		mix[c*cols+c] += 1 + float64(c%5)
	}
	z := make([]float64, cols)
	for t := 0; t < n; t++ {
		for i := range z {
			z[i] = r.NormFloat64()
		}
		for c := 0; c < cols; c++ {
			v := 0.0
			if c != deadCol {
				for k := 0; k < cols; k++ {
					v += mix[c*cols+k] * z[k]
				}
			}
			p.x.Set(c, t, v)
		}
	}
	p.h = make([]float64, cols*cols)
	for i := 0; i < cols; i++ {
		for j := 0; j < cols; j++ {
			s := 0.0
			for t := 0; t < n; t++ {
				s += p.x.At(i, t) * p.x.At(j, t)
			}
			p.h[i*cols+j] = 2 * s / float64(n)
		}
	}
	return p
}

// leastSquares solves min ‖(W − W′)X‖² over W′ that is zero on the removed
// columns, by QR least squares on the activations (not through H or any
// OBS formula). It returns W′ restricted to the kept columns, [rows × kept],
// and the residual ‖(W − W′)X‖².
func (p *obsProblem) leastSquares(t *testing.T, removedCols map[int]bool) ([]float64, float64) {
	var kept []int
	for c := 0; c < p.cols; c++ {
		if !removedCols[c] {
			kept = append(kept, c)
		}
	}
	W := mat.NewDense(p.rows, p.cols, nil)
	for r := 0; r < p.rows; r++ {
		for c := 0; c < p.cols; c++ {
			W.Set(r, c, float64(p.w[r*p.cols+c]))
		}
	}
	var target mat.Dense // (W X)ᵀ [n × rows]
	target.Mul(p.x.T(), W.T())
	if len(kept) == 0 {
		return nil, mat.Norm(&target, 2) * mat.Norm(&target, 2)
	}
	xr := mat.NewDense(p.n, len(kept), nil) // X_Rᵀ
	for t2 := 0; t2 < p.n; t2++ {
		for a, c := range kept {
			xr.Set(t2, a, p.x.At(c, t2))
		}
	}
	var z mat.Dense // [kept × rows] = W′_Rᵀ
	if err := z.Solve(xr, &target); err != nil {
		t.Fatalf("least squares: %v", err)
	}
	out := make([]float64, p.rows*len(kept))
	for r := 0; r < p.rows; r++ {
		for a := range kept {
			out[r*len(kept)+a] = z.At(a, r)
		}
	}
	var fit, res mat.Dense
	fit.Mul(xr, &z)
	res.Sub(&target, &fit)
	f := mat.Norm(&res, 2)
	return out, f * f
}

func relDiff(a []float32, b []float64) float64 {
	num, den := 0.0, 0.0
	for i := range b {
		d := float64(a[i]) - b[i]
		num += d * d
		den += b[i] * b[i]
	}
	return math.Sqrt(num / den)
}

func fullSchedule(units int) []int {
	s := make([]int, units+1)
	for i := range s {
		s[i] = i
	}
	return s
}

// After greedy removal of any prefix of the order, the compensated weight
// equals the exact least-squares solution (no damping), for single columns
// and for head groups, and the logged error is the least-squares residual.
func TestGreedyOBSIsLeastSquares(t *testing.T) {
	for _, tc := range []struct {
		name               string
		rows, cols, n, grp int
	}{
		{"neurons", 7, 12, 40, 1},
		{"heads", 6, 24, 60, 4},
		{"heads-d3", 5, 15, 50, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newOBSProblem(uint64(tc.cols), tc.rows, tc.cols, tc.n, -1)
			units := tc.cols / tc.grp
			res, err := GreedyOBS(p.w, tc.rows, tc.cols, p.h, OBSOptions{Group: tc.grp, Schedule: fullSchedule(units)})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Order) != units {
				t.Fatalf("order has %d units, want %d", len(res.Order), units)
			}
			seen := map[int]bool{}
			for _, u := range res.Order {
				if u < 0 || u >= units || seen[u] {
					t.Fatalf("order %v is not a permutation", res.Order)
				}
				seen[u] = true
			}
			removed := map[int]bool{}
			for l := 1; l <= units; l++ {
				u := res.Order[l-1]
				for c := u * tc.grp; c < (u+1)*tc.grp; c++ {
					removed[c] = true
				}
				want, resid := p.leastSquares(t, removed)
				got := res.Weights[l]
				if len(got) != len(want) {
					t.Fatalf("level %d: %d weights, want %d", l, len(got), len(want))
				}
				if l < units {
					if d := relDiff(got, want); d > 1e-6 {
						t.Errorf("level %d: relative difference to least squares %.3g > 1e-6", l, d)
					}
				}
				// error = ½·(2/n)·‖(W−W′)X‖²
				if e, want := res.Errors[l], resid/float64(tc.n); math.Abs(e-want) > 1e-8*want {
					t.Errorf("level %d: error %.12g, least-squares residual gives %.12g", l, e, want)
				}
			}
			if len(res.Weights[0]) != len(p.w) || res.Errors[0] != 0 {
				t.Errorf("level 0 must be the original weight with zero error")
			}
		})
	}
}

// The first unit removed is the brute-force argmin of the single-unit
// least-squares error.
func TestGreedyOBSFirstChoiceBruteForce(t *testing.T) {
	for _, grp := range []int{1, 4} {
		for seed := uint64(1); seed <= 4; seed++ {
			cols := 16
			p := newOBSProblem(seed*11+uint64(grp), 5, cols, 48, -1)
			res, err := GreedyOBS(p.w, 5, cols, p.h, OBSOptions{Group: grp, Schedule: []int{0, 1}})
			if err != nil {
				t.Fatal(err)
			}
			best, bestErr := -1, math.Inf(1)
			for u := 0; u < cols/grp; u++ {
				rm := map[int]bool{}
				for c := u * grp; c < (u+1)*grp; c++ {
					rm[c] = true
				}
				_, e := p.leastSquares(t, rm)
				if e < bestErr {
					best, bestErr = u, e
				}
			}
			if res.Order[0] != best {
				t.Errorf("group %d seed %d: first removal %d, brute force %d", grp, seed, res.Order[0], best)
			}
		}
	}
}

// A dead input (H_ii = 0) is zeroed and removed first at no cost; damping
// changes the compensation but the schedule and shapes stay.
func TestGreedyOBSDeadInputAndDamping(t *testing.T) {
	p := newOBSProblem(9, 4, 10, 30, 6)
	res, err := GreedyOBS(p.w, 4, 10, p.h, OBSOptions{Group: 1, Schedule: []int{0, 1, 5, 10}, RelDamp: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if res.Order[0] != 6 || res.Errors[1] != 0 {
		t.Errorf("dead input: first removal %d with error %g, want 6 with 0", res.Order[0], res.Errors[1])
	}
	if len(res.Weights[2]) != 4*5 || len(res.Weights[3]) != 0 {
		t.Errorf("level shapes: %d, %d values", len(res.Weights[2]), len(res.Weights[3]))
	}
	if !(res.Errors[1] <= res.Errors[2] && res.Errors[2] <= res.Errors[3]) {
		t.Errorf("errors not monotone: %v", res.Errors)
	}
}

func TestGreedyOBSBadInput(t *testing.T) {
	p := newOBSProblem(2, 3, 8, 20, -1)
	for _, tc := range []struct {
		name string
		opts OBSOptions
	}{
		{"group", OBSOptions{Group: 3, Schedule: []int{0, 1}}},
		{"decreasing", OBSOptions{Group: 1, Schedule: []int{0, 3, 2}}},
		{"exceeds", OBSOptions{Group: 1, Schedule: []int{0, 4, 9}}},
		{"no-zero", OBSOptions{Group: 1, Schedule: []int{1, 4}}},
		{"damp", OBSOptions{Group: 1, Schedule: []int{0, 1}, RelDamp: -1}},
	} {
		if _, err := GreedyOBS(p.w, 3, 8, p.h, tc.opts); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	bad := append([]float64(nil), p.h...)
	bad[0] = -5 // not positive definite without damping
	if _, err := GreedyOBS(p.w, 3, 8, bad, OBSOptions{Group: 1, Schedule: []int{0, 1}}); err == nil {
		t.Errorf("indefinite Hessian accepted")
	}
}
