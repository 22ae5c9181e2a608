//go:build vulkan && cgo

package vulkan

// Buffer-level operations. Each checks its operands, splits them into
// windows of at most maxElems (maxStorageBufferRange) and records
// dispatches into the current batch; nothing waits until Flush or a
// Download.

import (
	"fmt"
	"math"
)

func (d *Device) need(op string, v View, dt DType, n int, optional bool) error {
	if v.B == nil {
		if optional {
			return nil
		}
		return fmt.Errorf("vulkan: %s: missing operand", op)
	}
	if v.B.d != d {
		return fmt.Errorf("vulkan: %s: buffer belongs to another device", op)
	}
	if v.B.dt != dt {
		return fmt.Errorf("vulkan: %s: operand is %s, want %s", op, v.B.dt, dt)
	}
	if v.N < n {
		return fmt.Errorf("vulkan: %s: operand has %d elements, needs %d", op, v.N, n)
	}
	return v.B.check(op, v.Off, n)
}

func sub(v View, off, n int) View {
	if v.B == nil {
		return v
	}
	return View{v.B, v.Off + off, n}
}

// span is the number of elements from the first to the last of a block of
// r rows × c columns in a row-major matrix with leading dimension ld.
func span(r, c, ld int) int { return (r-1)*ld + c }

// gemmBlocks chooses block sizes (bm, bn, bk) so that every operand window
// spans at most lim elements (limB for B, which may be 16-bit).
func gemmBlocks(tA, tB bool, m, n, k, lim, limB int) (bm, bn, bk int, err error) {
	bm, bn, bk = m, n, k
	// shrink reduces rows (or, with one row left, cols) to fit ld.
	shrink := func(rows, cols *int, ld, l int) bool {
		if span(*rows, *cols, ld) <= l {
			return false
		}
		if *rows > 1 {
			*rows = max(1, min(*rows-1, (l-*cols)/ld+1))
		} else {
			*cols = l
		}
		return true
	}
	for it := 0; it < 64; it++ {
		changed := shrink(&bm, &bn, n, lim)
		if tA {
			changed = shrink(&bk, &bm, m, lim) || changed
		} else {
			changed = shrink(&bm, &bk, k, lim) || changed
		}
		if tB {
			changed = shrink(&bn, &bk, k, limB) || changed
		} else {
			changed = shrink(&bk, &bn, n, limB) || changed
		}
		if !changed {
			return bm, bn, bk, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("vulkan: gemm %d×%d×%d cannot be split to fit maxStorageBufferRange", m, n, k)
}

// Gemm records C[m×n] (+)= op(A)·op(B) with op(A) = A[m×k] (or A[k×m]ᵀ when
// tA) and op(B) = B[k×n] (or B[n×k]ᵀ when tB, the linear layer's shape).
// A and C are F32; B is F32, or BF16/F16 in the NT shape.
func (d *Device) Gemm(tA, tB bool, c, a, b View, m, n, k int, acc bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gemm(tA, tB, c, a, b, m, n, k, acc)
}

func (d *Device) gemm(tA, tB bool, c, a, b View, m, n, k int, acc bool) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("vulkan: gemm: negative size %d×%d×%d", m, n, k)
	}
	if m == 0 || n == 0 {
		return nil
	}
	var name string
	switch {
	case tA && tB:
		return fmt.Errorf("vulkan: gemm: the TT shape is not implemented")
	case tA:
		name = "gemm_tn"
	case tB:
		name = "gemm_nt"
	default:
		name = "gemm_nn"
	}
	bt := F32
	if b.B != nil && b.B.dt != F32 {
		if name != "gemm_nt" || (b.B.dt != BF16 && b.B.dt != F16) {
			return fmt.Errorf("vulkan: gemm: %s B operand is supported only in the NT shape", b.B.dt)
		}
		bt = b.B.dt
		name += "_" + bt.String()
	}
	if err := d.need("gemm C", c, F32, m*n, false); err != nil {
		return err
	}
	if k == 0 {
		if !acc {
			return fmt.Errorf("vulkan: gemm with k = 0 and acc = false (zero C on the host)")
		}
		return nil
	}
	if err := d.need("gemm A", a, F32, m*k, false); err != nil {
		return err
	}
	if err := d.need("gemm B", b, bt, n*k, false); err != nil {
		return err
	}
	bm, bn, bk, err := gemmBlocks(tA, tB, m, n, k, d.maxElems(F32), d.maxElems(bt))
	if err != nil {
		return err
	}
	bm = min(bm, 64*d.props.Limits.MaxComputeWorkGroupCount[1])
	bn = min(bn, 64*d.props.Limits.MaxComputeWorkGroupCount[0])
	for i0 := 0; i0 < m; i0 += bm {
		mi := min(bm, m-i0)
		for j0 := 0; j0 < n; j0 += bn {
			nj := min(bn, n-j0)
			// k in blocks: the running sums go through scratch (carry),
			// so that each element's sum is bitwise one dispatch's.
			nk := (k + bk - 1) / bk
			var tv View
			if nk > 1 {
				if err := d.prepare(nk, 0, 4*mi*nj); err != nil {
					return err
				}
				var err error
				if tv, err = d.take(&d.scratch, mi*nj); err != nil {
					return err
				}
			}
			for p0 := 0; p0 < k; p0 += bk {
				kp := min(bk, k-p0)
				var av, bv View
				ldA, ldB := k, n
				if tA {
					ldA = m
					av = sub(a, p0*m+i0, span(kp, mi, m))
				} else {
					av = sub(a, i0*k+p0, span(mi, kp, k))
				}
				if tB {
					ldB = k
					bv = sub(b, j0*k+p0, span(nj, kp, k))
				} else {
					bv = sub(b, p0*n+j0, span(kp, nj, n))
				}
				cv := sub(c, i0*n+j0, span(mi, nj, n))
				mode := 0
				if p0 > 0 {
					mode |= 2 // start from the carried sums
				}
				if p0+kp < k {
					mode |= 4 // carry them on
				} else if acc {
					mode |= 1
				}
				rest := pc(mi, nj, kp, ldA, ldB, n, mode)
				if err := d.dispatch(name, []View{av, bv, cv, tv}, rest, (nj+63)/64, (mi+63)/64, 1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// carry returns scratch for the running column sums (cols floats) of a
// reduction over rows split into chunks (the operation records up to sets
// dispatches),
// or the zero View when there is one chunk. The caller holds d.mu.
func (d *Device) carry(chunks, sets, cols int) (View, error) {
	if chunks <= 1 {
		if err := d.prepare(sets, 0, 0); err != nil {
			return View{}, err
		}
		return View{}, nil
	}
	if err := d.prepare(sets, 0, 4*cols); err != nil {
		return View{}, err
	}
	return d.take(&d.scratch, cols)
}

// carryMode is the mode of the chunk of rows [r0, r0+nr) of rows for the
// carrying reductions (addbias.comp, rmsnorm_bwd.comp): bit 0 starts from
// the carried sums, bit 1 stores them for the next chunk instead of adding
// into the result.
func carryMode(r0, nr, rows int) int {
	m := 0
	if r0 > 0 {
		m |= 1
	}
	if r0+nr < rows {
		m |= 2
	}
	return m
}

// rowChunk is how many rows of width cols fit in one window (and in the
// workgroup count limit).
func (d *Device) rowChunk(op string, cols int) (int, error) {
	r := d.maxElems(F32) / max(cols, 1)
	if r < 1 {
		return 0, fmt.Errorf("vulkan: %s: one row of %d floats exceeds maxStorageBufferRange", op, cols)
	}
	return min(r, d.props.Limits.MaxComputeWorkGroupCount[0]), nil
}

// RMSNorm records out[r] = w ⊙ x[r]·rstd[r], rstd = 1/sqrt(mean(x[r]²)+eps),
// for rows × dim; rstd (rows floats) may be the zero View. out may be x.
func (d *Device) RMSNorm(out, rstd, x, w View, rows, dim int, eps float32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range []struct {
		v   View
		n   int
		opt bool
	}{{out, rows * dim, false}, {rstd, rows, true}, {x, rows * dim, false}, {w, dim, false}} {
		if err := d.need("rmsnorm", c.v, F32, c.n, c.opt); err != nil {
			return err
		}
	}
	if dim > d.maxElems(F32) {
		return fmt.Errorf("vulkan: rmsnorm: dim %d exceeds maxStorageBufferRange", dim)
	}
	rc, err := d.rowChunk("rmsnorm", dim)
	if err != nil {
		return err
	}
	for r0 := 0; r0 < rows; r0 += rc {
		nr := min(rc, rows-r0)
		rest := pc(nr, dim, rstd.B != nil, eps)
		views := []View{sub(x, r0*dim, nr*dim), sub(w, 0, dim), sub(out, r0*dim, nr*dim), sub(rstd, r0, nr)}
		if err := d.dispatch("rmsnorm", views, rest, nr, 1, 1); err != nil {
			return err
		}
	}
	return nil
}

// Rope rotates x [T × nHeads × headDim] in place; row t has position pos0+t.
// cos and sin are [positions × headDim/2] tables (nn.Rope's) covering
// pos0+T positions. inverse applies the backward rotation.
func (d *Device) Rope(x, cos, sin View, T, nHeads, headDim, pos0 int, interleaved, inverse bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if headDim%2 != 0 || headDim <= 0 {
		return fmt.Errorf("vulkan: rope: head dim %d must be even and positive", headDim)
	}
	half := headDim / 2
	row := nHeads * headDim
	if err := d.need("rope x", x, F32, T*row, false); err != nil {
		return err
	}
	for _, v := range []View{cos, sin} {
		if err := d.need("rope table", v, F32, (pos0+T)*half, false); err != nil {
			return err
		}
	}
	rc, err := d.rowChunk("rope", row)
	if err != nil {
		return err
	}
	sign := float32(1)
	if inverse {
		sign = -1
	}
	for t0 := 0; t0 < T; t0 += rc {
		nt := min(rc, T-t0)
		tab := (pos0 + t0) * half
		gx, gy := d.grid1D(nt * nHeads * half)
		rest := pc(nt, nHeads, headDim, 0, interleaved, sign)
		views := []View{sub(x, t0*row, nt*row), sub(cos, tab, nt*half), sub(sin, tab, nt*half)}
		if err := d.dispatch("rope", views, rest, gx, gy, 1); err != nil {
			return err
		}
	}
	return nil
}

func (d *Device) rows(op, prog string, y, x View, rows, cols int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.need(op, x, F32, rows*cols, false); err != nil {
		return err
	}
	if err := d.need(op, y, F32, rows*cols, false); err != nil {
		return err
	}
	rc, err := d.rowChunk(op, cols)
	if err != nil {
		return err
	}
	for r0 := 0; r0 < rows; r0 += rc {
		nr := min(rc, rows-r0)
		if err := d.dispatch(prog, []View{sub(x, r0*cols, nr*cols), sub(y, r0*cols, nr*cols)}, pc(nr, cols), nr, 1, 1); err != nil {
			return err
		}
	}
	return nil
}

// Softmax records y[r] = softmax(x[r]) for rows × cols (y may be x).
func (d *Device) Softmax(y, x View, rows, cols int) error {
	return d.rows("softmax", "softmax", y, x, rows, cols)
}

// LogSoftmax records y[r] = x[r] − logsumexp(x[r]) (y may be x).
func (d *Device) LogSoftmax(y, x View, rows, cols int) error {
	return d.rows("logsoftmax", "logsoftmax", y, x, rows, cols)
}

// elementwise splits n elements into windows for a 1-D program.
func (d *Device) elementwise(prog string, views []View, n int, rest func() []byte) error {
	chunk := d.maxElems(F32)
	for i0 := 0; i0 < n; i0 += chunk {
		ni := min(chunk, n-i0)
		vs := make([]View, len(views))
		for i, v := range views {
			vs[i] = sub(v, i0, ni)
		}
		gx, gy := d.grid1D(ni)
		if err := d.dispatch(prog, vs, append(pc(ni), rest()...), gx, gy, 1); err != nil {
			return err
		}
	}
	return nil
}

// SiLUMul records out = silu(gate) ⊙ up over n elements (out may alias
// either input).
func (d *Device) SiLUMul(out, gate, up View, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range []View{out, gate, up} {
		if err := d.need("silu_mul", v, F32, n, false); err != nil {
			return err
		}
	}
	return d.elementwise("silu_mul", []View{gate, up, out}, n, func() []byte { return nil })
}

// AdamW records one AdamW step on n parameters w with gradient g and
// moments m, v (all F32; see train.AdamW).
func (d *Device) AdamW(w, g, m, v View, n int, p AdamWParams) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range []View{w, g, m, v} {
		if err := d.need("adamw", x, F32, n, false); err != nil {
			return err
		}
	}
	if p.Step < 1 {
		return fmt.Errorf("vulkan: adamw: step %d must be ≥ 1", p.Step)
	}
	bc1 := 1 - math.Pow(p.Beta1, float64(p.Step))
	bc2 := 1 - math.Pow(p.Beta2, float64(p.Step))
	rest := pc(float32(p.Beta1), float32(p.Beta2), float32(1-p.Beta1), float32(1-p.Beta2), float32(p.Eps), float32(p.LR), float32(1-p.LR*p.WeightDecay), float32(bc1), float32(bc2))
	return d.elementwise("adamw", []View{w, g, m, v}, n, func() []byte { return rest })
}

// CrossEntropy records, for rows × vocab logits z and I32 targets (−1: no
// target), loss[r] = logsumexp(z[r]) − z[r][t] and, when dz is not the zero
// View, dz[r] += scale·(softmax(z[r]) − onehot(t)).
func (d *Device) CrossEntropy(loss, dz, z, targets View, rows, vocab int, scale float32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.need("xent z", z, F32, rows*vocab, false); err != nil {
		return err
	}
	if err := d.need("xent dz", dz, F32, rows*vocab, true); err != nil {
		return err
	}
	if err := d.need("xent loss", loss, F32, rows, false); err != nil {
		return err
	}
	if err := d.need("xent targets", targets, I32, rows, false); err != nil {
		return err
	}
	rc, err := d.rowChunk("xent", vocab)
	if err != nil {
		return err
	}
	for r0 := 0; r0 < rows; r0 += rc {
		nr := min(rc, rows-r0)
		views := []View{sub(z, r0*vocab, nr*vocab), sub(targets, r0, nr), sub(dz, r0*vocab, nr*vocab), sub(loss, r0, nr)}
		if err := d.dispatch("xent", views, pc(nr, vocab, dz.B != nil, scale), nr, 1, 1); err != nil {
			return err
		}
	}
	return nil
}

// Attention records causal multi-head attention with grouped K/V heads:
// q [T × H × D], k and v [S × KVH × D], kvmap[h] ∈ [0, KVH) the K/V head of
// query head h (nil: the standard grouping h/(H/KVH)); query row t has
// position pos0+t and sees positions 0..pos0+t (pos0+T ≤ S). Writes the
// probabilities p [T × H × S] and out [T × H × D]. K and V are not split:
// each must fit one binding.
func (d *Device) Attention(out, p, q, k, v View, kvmap []int, T, S, H, KVH, D, pos0 int, scale float32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if T <= 0 || S <= 0 || H <= 0 || KVH <= 0 || D <= 0 || pos0 < 0 || pos0+T > S {
		return fmt.Errorf("vulkan: attention: bad sizes T=%d S=%d H=%d KVH=%d D=%d pos0=%d", T, S, H, KVH, D, pos0)
	}
	if kvmap == nil {
		if H%KVH != 0 {
			return fmt.Errorf("vulkan: attention: %d heads do not group evenly over %d K/V heads; pass kvmap", H, KVH)
		}
		kvmap = make([]int, H)
		for h := range kvmap {
			kvmap[h] = h / (H / KVH)
		}
	}
	if len(kvmap) != H {
		return fmt.Errorf("vulkan: attention: kvmap has %d entries for %d heads", len(kvmap), H)
	}
	for h, kh := range kvmap {
		if kh < 0 || kh >= KVH {
			return fmt.Errorf("vulkan: attention: kvmap[%d] = %d outside [0, %d)", h, kh, KVH)
		}
	}
	for _, c := range []struct {
		name string
		v    View
		n    int
	}{{"q", q, T * H * D}, {"k", k, S * KVH * D}, {"v", v, S * KVH * D}, {"p", p, T * H * S}, {"out", out, T * H * D}} {
		if err := d.need("attention "+c.name, c.v, F32, c.n, false); err != nil {
			return err
		}
	}
	lim := d.maxElems(F32)
	if S*KVH*D > lim {
		return fmt.Errorf("vulkan: attention: K/V of %d floats exceed maxStorageBufferRange (not split)", S*KVH*D)
	}
	rc := min(lim/(H*max(D, S)), d.props.Limits.MaxComputeWorkGroupCount[0]/H)
	if rc < 1 {
		return fmt.Errorf("vulkan: attention: one query row exceeds maxStorageBufferRange")
	}
	mv, err := d.hostInts(kvmap)
	if err != nil {
		return err
	}
	for t0 := 0; t0 < T; t0 += rc {
		nt := min(rc, T-t0)
		views := []View{sub(q, t0*H*D, nt*H*D), k, v, mv, sub(p, t0*H*S, nt*H*S), sub(out, t0*H*D, nt*H*D)}
		if err := d.dispatch("attention", views, pc(nt, S, H, KVH, D, pos0+t0, scale), nt*H, 1, 1); err != nil {
			return err
		}
	}
	return nil
}

// Embed records out[t] = table[ids[t]] (table [vocab × dim]); ids are
// checked on the host.
func (d *Device) Embed(out, table View, ids []int, vocab, dim int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.embedChecks("embed", table, out, ids, vocab, dim); err != nil || len(ids) == 0 {
		return err
	}
	return d.embedSplit("embed", "embed", sub(table, 0, vocab*dim), sub(out, 0, len(ids)*dim), ids, vocab, dim)
}

// RMSNormBackward records dx += ∂/∂x and dw += ∂/∂w of y = w ⊙ x·rstd
// (rstd from RMSNorm), as nn.RMSNormBackward; dx or dw may be the zero View
// to skip it.
func (d *Device) RMSNormBackward(dx, dw, dout, x, w, rstd View, rows, dim int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range []struct {
		v   View
		n   int
		opt bool
	}{{dx, rows * dim, true}, {dw, dim, true}, {dout, rows * dim, false}, {x, rows * dim, false}, {w, dim, false}, {rstd, rows, false}} {
		if err := d.need("rmsnorm backward", c.v, F32, c.n, c.opt); err != nil {
			return err
		}
	}
	rc, err := d.rowChunk("rmsnorm backward", dim)
	if err != nil {
		return err
	}
	var cy View
	if dw.B != nil {
		if cy, err = d.carry((rows+rc-1)/rc, (rows+rc-1)/rc*2, dim); err != nil {
			return err
		}
	}
	for r0 := 0; r0 < rows; r0 += rc {
		nr := min(rc, rows-r0)
		in := []View{sub(dout, r0*dim, nr*dim), sub(x, r0*dim, nr*dim), sub(w, 0, dim), sub(rstd, r0, nr)}
		if dx.B != nil {
			if err := d.dispatch("rmsnorm_bwd_dx", append(in, sub(dx, r0*dim, nr*dim)), pc(nr, dim), nr, 1, 1); err != nil {
				return err
			}
		}
		if dw.B != nil { // row chunks carry the column sums (bitwise one dispatch's)
			if err := d.dispatch("rmsnorm_bwd_dw", append(in, sub(dw, 0, dim), cy), pc(nr, dim, carryMode(r0, nr, rows)), (dim+255)/256, 1, 1); err != nil {
				return err
			}
		}
	}
	return nil
}

// SwiGLUBackward records dgate and dup (overwritten) for out = silu(gate)·up,
// as nn.SwiGLUBackward.
func (d *Device) SwiGLUBackward(dgate, dup, dout, gate, up View, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range []View{dgate, dup, dout, gate, up} {
		if err := d.need("swiglu backward", v, F32, n, false); err != nil {
			return err
		}
	}
	return d.elementwise("swiglu_bwd", []View{dout, gate, up, dgate, dup}, n, func() []byte { return nil })
}

// EmbedBackward records dtable[ids[r]] += dx[r] (rows in order), as
// nn.EmbeddingBackward; ids are checked on the host.
func (d *Device) EmbedBackward(dtable, dx View, ids []int, vocab, dim int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.embedChecks("embed backward", dtable, dx, ids, vocab, dim); err != nil || len(ids) == 0 {
		return err
	}
	return d.embedSplit("embed backward", "embed_bwd", sub(dtable, 0, vocab*dim), sub(dx, 0, len(ids)*dim), ids, vocab, dim)
}

// embedChecks validates the ids on the host and the table [vocab × dim] and
// rows [len(ids) × dim] operands of the embedding gather and its gradient
// (both split by embedSplit).
func (d *Device) embedChecks(what string, table, rows View, ids []int, vocab, dim int) error {
	for i, id := range ids {
		if id < 0 || id >= vocab {
			return fmt.Errorf("vulkan: %s: token %d at position %d outside the vocabulary of %d", what, id, i, vocab)
		}
	}
	if err := d.need(what+" table", table, F32, vocab*dim, false); err != nil {
		return err
	}
	return d.need(what+" rows", rows, F32, len(ids)*dim, false)
}
