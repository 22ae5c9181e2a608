// Package prune builds the DarwinLM pruning database: calibration sampling,
// Hessians of the o_proj and down_proj inputs from the dense model, the
// greedy structured OBS pass (ZipLM-style) that removes attention heads and
// MLP neurons with a compensating weight update, nested levels stored per
// layer, stitching a model from a level configuration, and the one-shot
// allocations (uniform, dynamic programming).
package prune

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/mat"

	"github.com/darwinlm/darwinlm-go/nn"
)

// OBSOptions configures one greedy structured OBS pass.
type OBSOptions struct {
	// Group is the number of consecutive input columns forming one unit: 1
	// for MLP neurons, head_dim for attention heads.
	Group int
	// Schedule lists, non-decreasing, the units removed at each level;
	// Schedule[0] must be 0 (the dense level) and no entry may exceed the
	// number of units. A snapshot of the compensated weight is taken at
	// every entry (equal entries share one).
	Schedule []int
	// RelDamp adds RelDamp·mean(diag H) to the diagonal of H (the reference
	// uses 1e-2). 0 means no damping.
	RelDamp float64
}

// OBSResult is the outcome of a greedy pass.
type OBSResult struct {
	// Order holds the units in the order they were removed (only as many as
	// the last schedule entry below the full width needed; a schedule entry
	// equal to the number of units removes the rest, appended in index order).
	Order []int
	// Weights[l] is the compensated weight at level l, [rows × kept columns]
	// row-major, with the removed columns physically absent and the kept
	// columns in their original order. Level 0 is the original weight.
	Weights [][]float32
	// Errors[l] is the accumulated OBS error Σε/2 of the units removed up to
	// level l (the reference's logged quantity).
	Errors []float64
}

// GreedyOBS runs the reference's structured OBS pass on one matrix.
//
// w is the weight [rows × cols] (PyTorch [out × in]) and h the Hessian of
// its inputs [cols × cols] (float64, H = (2/n)·Σ x xᵀ). Units are groups of
// opts.Group consecutive columns. Following the reference
// (paper-notes b.3): dead inputs (H_ii = 0) get H_ii = 1 and their columns
// are zeroed; relative damping is added; columns that are all zero get
// neutral Hessian rows; H⁻¹ comes from a Cholesky factorisation; then,
// repeatedly, the unit g with the smallest ε_g = tr(W_g (H⁻¹_gg)⁻¹ W_gᵀ) is
// removed (ties: lowest index), the remaining weights are updated with
// W −= W_g (H⁻¹_gg)⁻¹ H⁻¹_g: and H⁻¹ is downdated likewise.
//
// Everything after the input is float64: the Hessian, its inverse and the
// working copy of W, so that long greedy sequences (thousands of rank-1
// downdates) do not accumulate float32 rounding. Snapshots are rounded to
// float32. h is not modified.
func GreedyOBS(w []float32, rows, cols int, h []float64, opts OBSOptions) (*OBSResult, error) {
	d := opts.Group
	if d <= 0 || cols%d != 0 {
		return nil, fmt.Errorf("obs: %d columns are not a multiple of the group size %d", cols, d)
	}
	if len(w) != rows*cols || len(h) != cols*cols {
		return nil, fmt.Errorf("obs: weight has %d values (want %d×%d), Hessian %d (want %d²)", len(w), rows, cols, len(h), cols)
	}
	units := cols / d
	if err := checkSchedule(opts.Schedule, units); err != nil {
		return nil, err
	}
	if opts.RelDamp < 0 || math.IsNaN(opts.RelDamp) {
		return nil, fmt.Errorf("obs: relative damping %v must be non-negative", opts.RelDamp)
	}
	for i, v := range h {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("obs: Hessian entry %d is %v", i, v)
		}
	}

	// Working copies: W transposed, so that one input column is one
	// contiguous row (updates and removals are then row operations).
	wt := make([]float64, cols*rows)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			wt[c*rows+r] = float64(w[r*cols+c])
		}
	}
	hm := make([]float64, cols*cols)
	copy(hm, h)
	dead := make([]bool, cols)
	for i := 0; i < cols; i++ {
		if hm[i*cols+i] == 0 {
			dead[i] = true
			hm[i*cols+i] = 1
		}
	}
	if opts.RelDamp > 0 {
		mean := 0.0
		for i := 0; i < cols; i++ {
			mean += hm[i*cols+i]
		}
		damp := opts.RelDamp * mean / float64(cols)
		for i := 0; i < cols; i++ {
			hm[i*cols+i] += damp
		}
	}
	for c := 0; c < cols; c++ {
		zero := true
		row := wt[c*rows : (c+1)*rows]
		if dead[c] {
			clear(row)
		}
		for _, v := range row {
			if v != 0 {
				zero = false
				break
			}
		}
		if zero {
			for i := 0; i < cols; i++ {
				hm[c*cols+i], hm[i*cols+c] = 0, 0
			}
			hm[c*cols+c] = 1
		}
	}
	hinv, err := cholInverse(hm, cols)
	if err != nil {
		return nil, err
	}
	hm = nil

	res := &OBSResult{Weights: make([][]float32, len(opts.Schedule)), Errors: make([]float64, len(opts.Schedule))}
	res.Weights[0] = append([]float32(nil), w...)
	st := &obsState{rows: rows, d: d, n: cols, wt: wt, hinv: hinv, idx: make([]int, cols), live: cols}
	for i := range st.idx {
		st.idx[i] = i
	}
	st.removed = make([]bool, cols)
	if d == 1 {
		st.norm = make([]float64, cols)
		for c := range st.norm {
			row := wt[c*rows : (c+1)*rows]
			st.norm[c] = nn.DotT(row, row)
		}
	}
	removedUnits := make([]bool, units)
	errSum := 0.0
	level := 1
	for level < len(opts.Schedule) && opts.Schedule[level] < units {
		for len(res.Order) < opts.Schedule[level] {
			g, eps := st.best()
			if g < 0 {
				return nil, errors.New("obs: no unit left to remove (internal error)")
			}
			st.remove(g)
			removedUnits[st.idx[g]/d] = true
			res.Order = append(res.Order, st.idx[g]/d)
			errSum += eps / 2
			if st.live*8 < st.n*7 {
				st.compact()
			}
		}
		if opts.Schedule[level] == opts.Schedule[level-1] {
			res.Weights[level] = res.Weights[level-1]
		} else {
			res.Weights[level] = st.snapshot()
		}
		res.Errors[level] = errSum
		level++
	}
	if level < len(opts.Schedule) { // the last levels remove the whole module
		// The remaining error is that of removing every unit left at once:
		// ½ tr(W_R (H⁻¹_RR)⁻¹ W_Rᵀ) on the current (compensated) state.
		rest, err := st.removeAllError()
		if err != nil {
			return nil, err
		}
		for u := 0; u < units; u++ {
			if !removedUnits[u] {
				res.Order = append(res.Order, u)
			}
		}
		for ; level < len(opts.Schedule); level++ {
			res.Weights[level] = []float32{}
			res.Errors[level] = errSum + rest/2
		}
	}
	return res, nil
}

// checkSchedule validates a level schedule against the number of units.
func checkSchedule(s []int, units int) error {
	if len(s) < 1 || s[0] != 0 {
		return fmt.Errorf("level schedule %v must start at 0 (the dense level)", s)
	}
	for i := 1; i < len(s); i++ {
		if s[i] < s[i-1] {
			return fmt.Errorf("level schedule %v decreases at level %d", s, i)
		}
	}
	if s[len(s)-1] > units {
		return fmt.Errorf("level schedule %v exceeds the module's %d units", s, units)
	}
	return nil
}

// obsState is the working state of a greedy pass, compacted to the columns
// still present: idx maps a position to its original column; removed marks
// positions already taken out but not yet compacted away.
type obsState struct {
	rows, d int
	n       int       // current (compacted) number of columns
	wt      []float64 // [n × rows], W transposed
	// hinv is H⁻¹ [n × n]; only its upper triangle (column ≥ row) is kept
	// up to date, read through hinvAt / hinvRow.
	hinv    []float64
	norm    []float64 // d == 1: ‖Wᵀ[k,:]‖² of every position, kept by remove
	idx     []int
	removed []bool
	live    int
}

// best returns the position of the first column of the unit with the
// smallest OBS error and that error, or −1.
func (s *obsState) best() (int, float64) {
	ng := s.n / s.d
	scores := make([]float64, ng)
	parallelRange(ng, 1, func(lo, hi int) {
		gram := make([]float64, s.d*s.d)
		blk := make([]float64, s.d*s.d)
		for g := lo; g < hi; g++ {
			p := g * s.d
			if s.removed[p] {
				scores[g] = math.Inf(1)
				continue
			}
			scores[g] = s.unitError(p, gram, blk)
		}
	})
	bi, bv := -1, math.Inf(1)
	for g, v := range scores {
		if bi < 0 && !s.removed[g*s.d] || v < bv {
			bi, bv = g, v
		}
	}
	if bi < 0 {
		return -1, 0
	}
	return bi * s.d, bv
}

// unitError is ε = tr(W_g B⁻¹ W_gᵀ) with B = H⁻¹_gg for the unit at p.
func (s *obsState) unitError(p int, gram, blk []float64) float64 {
	d, rows := s.d, s.rows
	if d == 1 {
		return s.norm[p] / s.hinv[p*s.n+p]
	}
	for i := 0; i < d; i++ {
		ri := s.wt[(p+i)*rows : (p+i+1)*rows]
		for j := 0; j <= i; j++ {
			v := nn.DotT(ri, s.wt[(p+j)*rows:(p+j+1)*rows])
			gram[i*d+j], gram[j*d+i] = v, v
		}
	}
	s.block(p, blk)
	binv, err := symInverse(blk, d)
	if err != nil {
		return math.Inf(1)
	}
	e := 0.0
	for i := 0; i < d*d; i++ {
		e += binv[i] * gram[i]
	}
	return e
}

// remove takes out the unit at position p: W −= W_g B⁻¹ H⁻¹_g: and
// H⁻¹ −= H⁻¹_:g B⁻¹ H⁻¹_g:, restricted to the columns still present.
func (s *obsState) remove(p int) {
	d, n, rows := s.d, s.n, s.rows
	blk := make([]float64, d*d)
	s.block(p, blk)
	binv, err := symInverse(blk, d)
	if err != nil {
		binv = pseudoInverse(blk, d)
	}
	hg := make([]float64, d*n) // H⁻¹[g, :]
	for i := 0; i < d; i++ {
		s.hinvRow(p+i, hg[i*n:(i+1)*n])
	}
	wg := make([]float64, d*rows) // Wᵀ[g, :]
	copy(wg, s.wt[p*rows:(p+d)*rows])
	for i := 0; i < d; i++ {
		s.removed[p+i] = true
	}
	s.live -= d
	parallelRange(n, 16, func(lo, hi int) {
		coef := make([]float64, d)
		var sub []float64
		if d > 1 {
			sub = make([]float64, n)
		}
		for k := lo; k < hi; k++ {
			if s.removed[k] {
				continue
			}
			// coef = B⁻¹ H⁻¹[g, k]
			for i := 0; i < d; i++ {
				c := 0.0
				for j := 0; j < d; j++ {
					c += binv[i*d+j] * hg[j*n+k]
				}
				coef[i] = c
			}
			// Upper triangle of row k only (H⁻¹ is symmetric).
			hrow := s.hinv[k*n+k : (k+1)*n]
			wrow := s.wt[k*rows : (k+1)*rows]
			if d == 1 {
				axpy(-coef[0], hg[k:n], hrow)
				s.norm[k] = axpyNorm(-coef[0], wg, wrow)
				continue
			}
			// Σ_i coef[i]·H⁻¹[g_i, k:] first, then one pass over the row.
			acc := sub[:n-k]
			clear(acc)
			for i := 0; i < d; i++ {
				axpy(coef[i], hg[i*n+k:(i+1)*n], acc)
			}
			axpy(-1, acc, hrow)
			for i := 0; i < d; i++ {
				axpy(-coef[i], wg[i*rows:(i+1)*rows], wrow)
			}
		}
	})
}

// compact drops removed positions from the working arrays.
func (s *obsState) compact() {
	keep := make([]int, 0, s.live)
	for k := 0; k < s.n; k++ {
		if !s.removed[k] {
			keep = append(keep, k)
		}
	}
	m, rows := len(keep), s.rows
	for a, k := range keep { // rows move down only, so in-place copies are safe
		src := s.hinv[k*s.n : (k+1)*s.n]
		dst := s.hinv[a*m : (a+1)*m]
		for b := a; b < m; b++ { // upper triangle: keep is ascending
			dst[b] = src[keep[b]]
		}
		copy(s.wt[a*rows:(a+1)*rows], s.wt[k*rows:(k+1)*rows])
		s.idx[a] = s.idx[k]
		if s.norm != nil {
			s.norm[a] = s.norm[k]
		}
	}
	s.n = m
	s.hinv = s.hinv[:m*m]
	s.wt = s.wt[:m*rows]
	s.idx = s.idx[:m]
	s.removed = s.removed[:m]
	clear(s.removed)
	if s.norm != nil {
		s.norm = s.norm[:m]
	}
}

// hinvAt reads H⁻¹[i, j] from the upper triangle.
func (s *obsState) hinvAt(i, j int) float64 {
	if j < i {
		i, j = j, i
	}
	return s.hinv[i*s.n+j]
}

// hinvRow writes the full row r of H⁻¹ into dst [n].
func (s *obsState) hinvRow(r int, dst []float64) {
	for c := 0; c < r; c++ {
		dst[c] = s.hinv[c*s.n+r]
	}
	copy(dst[r:s.n], s.hinv[r*s.n+r:(r+1)*s.n])
}

// block writes the d × d diagonal block of H⁻¹ at position p into blk.
func (s *obsState) block(p int, blk []float64) {
	d := s.d
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			blk[i*d+j] = s.hinvAt(p+i, p+j)
		}
	}
}

// snapshot returns the current weight [rows × live columns] in float32,
// columns in their original order.
func (s *obsState) snapshot() []float32 {
	cols := make([]int, 0, s.live)
	for k := 0; k < s.n; k++ {
		if !s.removed[k] {
			cols = append(cols, k)
		}
	}
	out := make([]float32, s.rows*len(cols))
	for c, k := range cols {
		row := s.wt[k*s.rows : (k+1)*s.rows]
		for r, v := range row {
			out[r*len(cols)+c] = float32(v)
		}
	}
	return out
}

// removeAllError is tr(W_R (H⁻¹_RR)⁻¹ W_Rᵀ) over all columns still present.
func (s *obsState) removeAllError() (float64, error) {
	s.compact()
	n, rows := s.n, s.rows
	if n == 0 {
		return 0, nil
	}
	full := make([]float64, n*n)
	for i := 0; i < n; i++ {
		s.hinvRow(i, full[i*n:(i+1)*n])
	}
	binv, err := symInverse(full, n)
	if err != nil {
		binv = pseudoInverse(full, n)
	}
	e := 0.0
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			e += binv[i*n+j] * nn.DotT(s.wt[i*rows:(i+1)*rows], s.wt[j*rows:(j+1)*rows])
		}
	}
	return e, nil
}

// cholInverse returns H⁻¹ through a Cholesky factorisation (as the
// reference's cholesky_inverse).
func cholInverse(h []float64, n int) ([]float64, error) {
	var ch mat.Cholesky
	if !ch.Factorize(mat.NewSymDense(n, h)) {
		return nil, fmt.Errorf("obs: the damped Hessian (%d×%d) is not positive definite; increase --damp", n, n)
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, fmt.Errorf("obs: inverting the Hessian: %w", err)
	}
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			v := inv.At(i, j)
			out[i*n+j], out[j*n+i] = v, v
		}
	}
	return out, nil
}

// symInverse inverts a small symmetric positive definite matrix by Cholesky.
func symInverse(b []float64, d int) ([]float64, error) {
	if d == 1 {
		if !(b[0] > 0) {
			return nil, errors.New("not positive")
		}
		return []float64{1 / b[0]}, nil
	}
	sym := make([]float64, d*d)
	for i := 0; i < d; i++ { // symmetrise: downdates leave rounding asymmetry
		for j := 0; j < d; j++ {
			sym[i*d+j] = (b[i*d+j] + b[j*d+i]) / 2
		}
	}
	return cholInverse(sym, d)
}

// pseudoInverse is the symmetric pseudo-inverse (the reference's fallback
// when a block is not positive definite): eigenvalues below a relative
// tolerance are dropped.
func pseudoInverse(b []float64, d int) []float64 {
	sym := mat.NewSymDense(d, nil)
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			sym.SetSym(i, j, (b[i*d+j]+b[j*d+i])/2)
		}
	}
	var es mat.EigenSym
	out := make([]float64, d*d)
	if !es.Factorize(sym, true) {
		return out
	}
	vals := es.Values(nil)
	var vec mat.Dense
	es.VectorsTo(&vec)
	maxv := 0.0
	for _, v := range vals {
		maxv = max(maxv, math.Abs(v))
	}
	tol := maxv * float64(d) * 1e-15
	for k, v := range vals {
		if math.Abs(v) <= tol {
			continue
		}
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				out[i*d+j] += vec.At(i, k) * vec.At(j, k) / v
			}
		}
	}
	return out
}

// axpy computes y += a·x.
func axpy(a float64, x, y []float64) {
	if a == 0 {
		return
	}
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// axpyNorm computes y += a·x and returns ‖y‖² (one pass).
func axpyNorm(a float64, x, y []float64) float64 {
	x = x[:len(y)]
	s0, s1 := 0.0, 0.0
	i := 0
	for ; i+2 <= len(y); i += 2 {
		v0 := y[i] + a*x[i]
		v1 := y[i+1] + a*x[i+1]
		y[i], y[i+1] = v0, v1
		s0 += v0 * v0
		s1 += v1 * v1
	}
	for ; i < len(y); i++ {
		v := y[i] + a*x[i]
		y[i] = v
		s0 += v * v
	}
	return s0 + s1
}

// parallelRange splits [0,n) into contiguous chunks of at least minChunk
// and runs f on them on up to GOMAXPROCS goroutines. f must only write the
// outputs of its own indices, so results do not depend on the split.
func parallelRange(n, minChunk int, f func(lo, hi int)) {
	w := runtime.GOMAXPROCS(0)
	if minChunk < 1 {
		minChunk = 1
	}
	w = min(w, (n+minChunk-1)/minChunk)
	if w <= 1 {
		f(0, n)
		return
	}
	// More chunks than workers balance the uneven cost of rows (skipped
	// rows, the shrinking upper triangle).
	chunks := min(n, w*16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for t := 0; t < w; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				c := next
				next++
				mu.Unlock()
				if c >= chunks {
					return
				}
				f(c*n/chunks, (c+1)*n/chunks)
			}
		}()
	}
	wg.Wait()
}
