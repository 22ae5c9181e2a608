package nn

import (
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/internal/fastmath"
)

// AttentionForwardGEMM computes exactly what AttentionForward computes (same
// layouts, same causal masking, same float64 softmax normaliser) but runs the
// two products of every KV group, S = Q·Kᵀ and O = P·V, as matrix products on
// the backend, so they use its SIMD (or GPU) kernels. The query heads of one
// KV group are stacked so each group costs one product of each kind. The
// masked upper triangle is computed and discarded: twice the flops of a
// causal loop, but at GEMM speed. Groups may be ragged (kvMap, see KVHead);
// a K/V head that no query head reads is skipped.
func AttentionForwardGEMM(be backend.Backend, out, probs, q, k, v []float32, T, past, nH, nKV int, kvMap []int, d int) {
	groups, maxGroup := kvGroups(nH, nKV, kvMap)
	Tk := past + T
	scale := float32(1 / math.Sqrt(float64(d)))
	qs, kvs := nH*d, nKV*d
	// Scratch (recycled, not cleared): every buffer is fully written before
	// it is read.
	sp := getScratch(2*maxGroup*T*d + 2*Tk*d + maxGroup*T*Tk)
	defer putScratch(sp)
	rest := *sp
	qg := carve(&rest, maxGroup*T*d)
	kh := carve(&rest, Tk*d)
	vh := carve(&rest, Tk*d)
	s := carve(&rest, maxGroup*T*Tk)
	og := carve(&rest, maxGroup*T*d)
	rk, _ := be.(backend.RowKernels)
	for g, heads := range groups {
		if len(heads) == 0 {
			continue
		}
		rows := len(heads) * T // stacked query rows of one group: row = hi*T + t
		gatherHead(kh, k, Tk, kvs, g*d, d)
		gatherHead(vh, v, Tk, kvs, g*d, d)
		for hi, h := range heads {
			gatherHead(qg[hi*T*d:], q, T, qs, h*d, d)
		}
		matNTCausal(be, s[:rows*Tk], qg[:rows*d], kh, rows, Tk, d, T, past)
		ParallelFor(len(heads), func(hi int) {
			h := heads[hi]
			softmaxCausalRows(rk, s[hi*T*Tk:(hi+1)*T*Tk], Tk, T, past, scale)
			if probs != nil {
				copy(probs[h*T*Tk:(h+1)*T*Tk], s[hi*T*Tk:(hi+1)*T*Tk])
			}
		})
		be.MatMulNN(og[:rows*d], s[:rows*Tk], vh, rows, d, Tk, false)
		for hi, h := range heads {
			copyRows(out, h*d, qs, og, hi*T*d, d, T, d)
		}
	}
}

// KVHead is the K/V head that query head h of nH reads among nKV: kvMap[h],
// or with a nil map the standard equal groups, h / (nH/nKV).
func KVHead(h, nH, nKV int, kvMap []int) int {
	if kvMap != nil {
		return kvMap[h]
	}
	return h / (nH / nKV)
}

// kvGroups lists, for each K/V head, the query heads that read it in
// ascending order (one backing array), and the size of the largest group.
func kvGroups(nH, nKV int, kvMap []int) ([][]int, int) {
	count := make([]int, nKV+1)
	for h := 0; h < nH; h++ {
		count[KVHead(h, nH, nKV, kvMap)+1]++
	}
	mx := 0
	for g := 1; g <= nKV; g++ {
		mx = max(mx, count[g])
		count[g] += count[g-1]
	}
	all := make([]int, nH)
	groups := make([][]int, nKV)
	for g := range groups {
		groups[g] = all[count[g]:count[g]:count[g+1]]
	}
	for h := 0; h < nH; h++ {
		g := KVHead(h, nH, nKV, kvMap)
		groups[g] = append(groups[g], h)
	}
	return groups, mx
}

// causalScoresKernel is implemented by a backend that can leave out the
// wholly masked tiles of the scores product S = Q·Kᵀ (the CPU one): the
// visible entries are bitwise MatMulNT's, the rest is unspecified.
type causalScoresKernel interface {
	MatMulNTCausal(c, a, b []float32, m, n, k, T, past int)
}

// matNTCausal computes the attention scores of stacked query rows (row i is
// query i mod T, which sees columns 0..past + i mod T); only the visible
// entries are defined, which is all the causal softmax reads.
func matNTCausal(be backend.Backend, c, a, b []float32, m, n, k, T, past int) {
	if cs, ok := be.(causalScoresKernel); ok {
		cs.MatMulNTCausal(c, a, b, m, n, k, T, past)
		return
	}
	be.MatMulNT(c, a, b, m, n, k, false)
}

// causalRowsKernel is implemented by a backend with a multi-row causal
// softmax (the CPU one): bitwise SoftmaxCausalRow on each row.
type causalRowsKernel interface {
	SoftmaxCausalRows(s []float32, ld, n, last0 int, scale float32)
}

// smRows is the row block of the recomputed softmax (a unit of ParallelFor).
const smRows = 32

// softmaxCausalRows is softmaxCausalRow on n consecutive query rows of one
// head: row i is s[i*ld:(i+1)*ld] with last = last0+i.
func softmaxCausalRows(rk backend.RowKernels, s []float32, ld, n, last0 int, scale float32) {
	if cr, ok := rk.(causalRowsKernel); ok {
		cr.SoftmaxCausalRows(s, ld, n, last0, scale)
		return
	}
	for i := 0; i < n; i++ {
		softmaxCausalRow(rk, s[i*ld:(i+1)*ld], last0+i, scale)
	}
}

// softmaxCausalRow turns raw scores row[0..last] into probabilities of
// softmax(scale·row) and zeroes the masked tail row[last+1:]. With row
// kernels (rk != nil) the backend computes the same bits, faster.
func softmaxCausalRow(rk backend.RowKernels, row []float32, last int, scale float32) {
	if rk != nil {
		rk.SoftmaxCausalRow(row, last, scale)
		return
	}
	mx := float32(math.Inf(-1))
	for j := 0; j <= last; j++ {
		row[j] *= scale
		if row[j] > mx {
			mx = row[j]
		}
	}
	var sum float64
	for j := 0; j <= last; j++ {
		e := fastmath.Expf(row[j] - mx)
		row[j] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for j := 0; j <= last; j++ {
		row[j] *= inv
	}
	clear(row[last+1:])
}

// attentionBackwardGEMM is AttentionBackward for float32 as matrix products,
// one KV group at a time (T queries from position 0, Tk = T). With the stacked
// queries of the group Qg [rows × d], rows = group·T, and P [rows × T]:
//
//	dP = dO·Vᵀ,  dS = scale·P ⊙ (dP − rowsum(P ⊙ dP)),
//	dQ = dS·K,   dK = dSᵀ·Q,   dV = Pᵀ·dO.
//
// The heads of a group are summed inside the dK and dV products, so the
// result is deterministic. When probs is nil, P is recomputed with the very
// product and softmax of AttentionForwardGEMM, so it is bitwise the forward's.
func attentionBackwardGEMM(be backend.Backend, dq, dk, dv, dout, q, k, v, probs []float32, T, nH, nKV int, kvMap []int, d int) {
	groups, maxGroup := kvGroups(nH, nKV, kvMap)
	scale := float32(1 / math.Sqrt(float64(d)))
	qs, kvs := nH*d, nKV*d
	// Scratch (recycled, not cleared): every buffer is fully written before
	// it is read.
	sp := getScratch(3*maxGroup*T*d + 4*T*d + 2*maxGroup*T*T)
	defer putScratch(sp)
	rest := *sp
	qgAll := carve(&rest, maxGroup*T*d)
	dogAll := carve(&rest, maxGroup*T*d)
	kh := carve(&rest, T*d)
	vh := carve(&rest, T*d)
	pAll := carve(&rest, maxGroup*T*T)
	dsAll := carve(&rest, maxGroup*T*T)
	dqgAll := carve(&rest, maxGroup*T*d)
	dkh := carve(&rest, T*d)
	dvh := carve(&rest, T*d)
	rk, _ := be.(backend.RowKernels)
	dsk, _ := be.(dsKernels)
	for g, heads := range groups {
		if len(heads) == 0 {
			// No query head reads this K/V head: its gradient is zero.
			for j := 0; j < T; j++ {
				clear(dk[j*kvs+g*d : j*kvs+g*d+d])
				clear(dv[j*kvs+g*d : j*kvs+g*d+d])
			}
			continue
		}
		rows := len(heads) * T
		qg, dog, p, ds, dqg := qgAll[:rows*d], dogAll[:rows*d], pAll[:rows*T], dsAll[:rows*T], dqgAll[:rows*d]
		gatherHead(kh, k, T, kvs, g*d, d)
		gatherHead(vh, v, T, kvs, g*d, d)
		for hi, h := range heads {
			gatherHead(qg[hi*T*d:], q, T, qs, h*d, d)
			gatherHead(dog[hi*T*d:], dout, T, qs, h*d, d)
		}
		if probs != nil {
			// Saved rows hold only columns 0..t; the rest must be zero.
			for r := 0; r < rows; r++ {
				t, h := r%T, heads[r/T]
				row := p[r*T : (r+1)*T]
				copy(row[:t+1], probs[(h*T+t)*T:(h*T+t)*T+t+1])
				clear(row[t+1:])
			}
		} else {
			matNTCausal(be, p, qg, kh, rows, T, d, T, 0)
			nb := (T + smRows - 1) / smRows // row blocks per head
			ParallelFor(len(heads)*nb, func(b int) {
				t0 := b % nb * smRows
				r0 := b/nb*T + t0
				softmaxCausalRows(rk, p[r0*T:(r0+min(smRows, T-t0))*T], T, min(smRows, T-t0), t0, scale)
			})
		}
		be.MatMulNT(ds, dog, vh, rows, T, d, false) // dP
		ParallelFor((rows+dsBlock-1)/dsBlock, func(b int) {
			dsRows(dsk, p, ds, b*dsBlock, min(b*dsBlock+dsBlock, rows), T, scale)
		})
		be.MatMulNN(dqg, ds, kh, rows, d, T, false)
		be.MatMulTN(dkh, ds, qg, T, d, rows, false)
		be.MatMulTN(dvh, p, dog, T, d, rows, false)
		for hi, h := range heads {
			copyRows(dq, h*d, qs, dqg, hi*T*d, d, T, d)
		}
		copyRows(dk, g*d, kvs, dkh, 0, d, T, d)
		copyRows(dv, g*d, kvs, dvh, 0, d, T, d)
	}
}

// dsBlock rows of dS are done together: their row sums are independent
// float64 chains the CPU overlaps (one chain is bound by the add latency).
const dsBlock = 4

// dsRows computes, for the stacked rows r0 ≤ r < r1 of P and dP (row r is
// query t = r mod T, T columns), dS = scale·P ⊙ (dP − s) with
// s = float32(Σ_j float64(P_j)·float64(dP_j)) summed in index order, in
// place over ds: bitwise the plain row loop. The masked columns j > t add
// float64(+0)·dP_j = ±0 to s, which leaves it unchanged (a float64 sum
// starting at +0 is never −0), so they are left out of the sum when they
// are exactly zero in P and finite in dP; otherwise the whole row is summed.
// Every column, masked or not, still gets the elementwise update.
func dsRows(dk dsKernels, p, ds []float32, r0, r1, T int, scale float32) {
	var n [dsBlock]int // summed prefix of each row
	var sum [dsBlock]float64
	for r := r0; r < r1; r += dsBlock {
		nb := min(dsBlock, r1-r)
		c := T // common prefix of the block
		for i := 0; i < nb; i++ {
			n[i] = sumPrefix(dk, p[(r+i)*T:(r+i+1)*T], ds[(r+i)*T:(r+i+1)*T], (r+i)%T)
			c = min(c, n[i])
			sum[i] = 0
		}
		if nb == dsBlock {
			p0, p1, p2, p3 := p[r*T:r*T+c], p[(r+1)*T:(r+1)*T+c], p[(r+2)*T:(r+2)*T+c], p[(r+3)*T:(r+3)*T+c]
			d0, d1, d2, d3 := ds[r*T:r*T+c], ds[(r+1)*T:(r+1)*T+c], ds[(r+2)*T:(r+2)*T+c], ds[(r+3)*T:(r+3)*T+c]
			s0, s1, s2, s3 := sum[0], sum[1], sum[2], sum[3]
			for j := range p0 {
				s0 += float64(p0[j]) * float64(d0[j])
				s1 += float64(p1[j]) * float64(d1[j])
				s2 += float64(p2[j]) * float64(d2[j])
				s3 += float64(p3[j]) * float64(d3[j])
			}
			sum[0], sum[1], sum[2], sum[3] = s0, s1, s2, s3
		} else {
			c = 0
		}
		for i := 0; i < nb; i++ {
			pr, dr := p[(r+i)*T:(r+i+1)*T], ds[(r+i)*T:(r+i+1)*T]
			s := sum[i]
			for j := c; j < n[i]; j++ {
				s += float64(pr[j]) * float64(dr[j])
			}
			fs := float32(s)
			if dk != nil {
				dk.AttnDSScale(pr, dr, fs, scale)
				continue
			}
			for j, pj := range pr {
				dr[j] = pj * (dr[j] - fs) * scale
			}
		}
	}
}

// dsKernels is implemented by a backend with vector versions of dsRows'
// elementwise loops (the CPU one), bitwise the loops.
type dsKernels interface {
	AttnDSScale(p, d []float32, fs, scale float32) // d[j] = p[j]·(d[j] − fs)·scale
	AttnMaskedClean(p, d []float32) bool           // every p[j] == 0 and d[j] finite
}

// sumPrefix is how much of a dS row must be summed: t+1 when every masked
// column j > t has P_j == 0 and a finite dP_j, else the whole row.
func sumPrefix(dk dsKernels, pr, dr []float32, t int) int {
	if dk != nil {
		if dk.AttnMaskedClean(pr[t+1:], dr[t+1:len(pr)]) {
			return t + 1
		}
		return len(pr)
	}
	dr = dr[:len(pr)]
	for j := t + 1; j < len(pr); j++ {
		if pr[j] != 0 || dr[j]-dr[j] != 0 {
			return len(pr)
		}
	}
	return t + 1
}

// gatherHead copies one head's rows out of an interleaved [n × stride]
// activation (the head's d values start at column off) into a contiguous
// [n × d] block.
func gatherHead(dst, src []float32, n, stride, off, d int) {
	copyRows(dst, 0, d, src, off, stride, n, d)
}

// copyRows copies n rows of d values, row j from src[so+j*ss:] to
// dst[do+j*ds:]. Head dims 8 and 16 move element by element (a memmove call
// per row of a tiny head was most of the cost of gathering it).
func copyRows(dst []float32, do, ds int, src []float32, so, ss, n, d int) {
	if n <= 0 || d <= 0 {
		return
	}
	dst, src = dst[do:], src[so:]
	switch d {
	case 8:
		for j := 0; j < n; j++ {
			s, t := (*[8]float32)(src[j*ss:]), (*[8]float32)(dst[j*ds:])
			t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7] = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
		}
	case 16:
		for j := 0; j < n; j++ {
			s, t := (*[16]float32)(src[j*ss:]), (*[16]float32)(dst[j*ds:])
			t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7] = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
			t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15] = s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]
		}
	default:
		for j := 0; j < n; j++ {
			copy(dst[j*ds:j*ds+d], src[j*ss:j*ss+d])
		}
	}
}
