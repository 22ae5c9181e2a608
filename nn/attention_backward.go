package nn

import (
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
)

// AttentionForwardT is the generic twin of the attention forward pass
// (training uses past = 0 but the twin supports the general case). In float32
// with a backend it is AttentionForwardGEMM, the path model.Forward takes, so
// training sees exactly the inference computation; without a backend it is
// the direct loop AttentionForward. float64 (gradient checks) runs the loop.
func AttentionForwardT[F Float](be backend.Backend, out, probs, q, k, v []F, T, past, nH, nKV int, kvMap []int, d int) {
	if o, ok := any(out).([]float32); ok {
		if be != nil {
			AttentionForwardGEMM(be, o, any(probs).([]float32), any(q).([]float32), any(k).([]float32), any(v).([]float32), T, past, nH, nKV, kvMap, d)
			return
		}
	}
	attentionLoop(out, probs, q, k, v, T, past, nH, nKV, kvMap, d)
}

// attnRow computes the softmax probabilities of query t of head h over keys
// 0..past+t (read from K/V head kh) into att[:past+t+1] and returns that
// slice. The arithmetic is the one of AttentionForward, so for float32 the
// probabilities are bitwise those of the forward pass (recomputation in the
// backward pass is exact).
func attnRow[F Float](att, q, k []F, t, past, h, kh, nH, nKV, d int) []F {
	scale := F(1 / math.Sqrt(float64(d)))
	qs, kvs := nH*d, nKV*d
	last := past + t
	qt := q[t*qs+h*d : t*qs+h*d+d]
	mx := F(math.Inf(-1))
	for j := 0; j <= last; j++ {
		s := DotT(qt, k[j*kvs+kh*d:j*kvs+kh*d+d]) * scale
		att[j] = s
		if s > mx {
			mx = s
		}
	}
	var sum float64
	for j := 0; j <= last; j++ {
		e := expT(att[j] - mx)
		att[j] = e
		sum += float64(e)
	}
	inv := F(1 / sum)
	for j := 0; j <= last; j++ {
		att[j] *= inv
	}
	return att[:last+1]
}

// AttentionBackward back-propagates causal GQA attention of one sequence of
// T tokens starting at position 0 (q [T × nH × d], k and v [T × nKV × d]).
// probs is the [nH × T × T] output of the forward pass, or nil: then every
// probability row is recomputed from q and k (bitwise equal to the forward
// pass), so that [nH × T × T] never needs to be stored. dq, dk and dv are
// overwritten. With p the probabilities of query t, s = scale·q·k:
//
//	dv_j += p_j·dout_t
//	dp_j  = dout_t·v_j
//	ds_j  = p_j·(dp_j − Σ_i p_i·dp_i)
//	dq_t += scale·Σ_j ds_j·k_j,   dk_j += scale·ds_j·q_t
//
// Query heads run in parallel; the K/V gradients of the heads of one group
// are summed afterwards in head order, so the result is deterministic. Groups
// may be ragged (kvMap, see KVHead); a K/V head no query head reads gets a
// zero gradient.
//
// In float32 with a backend the same formulas run as matrix products
// (attentionBackwardGEMM), matching AttentionForwardT's GEMM path.
func AttentionBackward[F Float](be backend.Backend, dq, dk, dv, dout, q, k, v, probs []F, T, nH, nKV int, kvMap []int, d int) {
	if dq32, ok := any(dq).([]float32); ok && be != nil {
		attentionBackwardGEMM(be, dq32, any(dk).([]float32), any(dv).([]float32), any(dout).([]float32),
			any(q).([]float32), any(k).([]float32), any(v).([]float32), any(probs).([]float32), T, nH, nKV, kvMap, d)
		return
	}
	groups, _ := kvGroups(nH, nKV, kvMap)
	scale := F(1 / math.Sqrt(float64(d)))
	qs, kvs := nH*d, nKV*d
	// Per-query-head K/V gradients: [nH][T × d].
	dkh := make([]F, nH*T*d)
	dvh := make([]F, nH*T*d)
	ParallelFor(nH, func(h int) {
		kh := KVHead(h, nH, nKV, kvMap)
		att := make([]F, T)
		dp := make([]F, T)
		myK, myV := dkh[h*T*d:(h+1)*T*d], dvh[h*T*d:(h+1)*T*d]
		for t := 0; t < T; t++ {
			var p []F
			if probs != nil {
				p = probs[(h*T+t)*T : (h*T+t)*T+t+1]
			} else {
				p = attnRow(att, q, k, t, 0, h, kh, nH, nKV, d)
			}
			do := dout[t*qs+h*d : t*qs+h*d+d]
			qt := q[t*qs+h*d : t*qs+h*d+d]
			dqt := dq[t*qs+h*d : t*qs+h*d+d]
			clear(dqt)
			var sum float64
			for j := range p {
				vj := v[j*kvs+kh*d : j*kvs+kh*d+d]
				dp[j] = DotT(do, vj)
				sum += float64(p[j]) * float64(dp[j])
				pj := p[j]
				dvj := myV[j*d : j*d+d]
				for i, g := range do {
					dvj[i] += pj * g
				}
			}
			fs := F(sum)
			for j, pj := range p {
				ds := pj * (dp[j] - fs) * scale
				if ds == 0 {
					continue
				}
				kj := k[j*kvs+kh*d : j*kvs+kh*d+d]
				dkj := myK[j*d : j*d+d]
				for i := range qt {
					dqt[i] += ds * kj[i]
					dkj[i] += ds * qt[i]
				}
			}
		}
	})
	ParallelFor(nKV, func(kh int) {
		heads := groups[kh]
		for t := 0; t < T; t++ {
			dkt, dvt := dk[t*kvs+kh*d:t*kvs+kh*d+d], dv[t*kvs+kh*d:t*kvs+kh*d+d]
			if len(heads) == 0 {
				clear(dkt)
				clear(dvt)
				continue
			}
			copy(dkt, dkh[(heads[0]*T+t)*d:])
			copy(dvt, dvh[(heads[0]*T+t)*d:])
			for _, h := range heads[1:] {
				sk, sv := dkh[(h*T+t)*d:(h*T+t)*d+d], dvh[(h*T+t)*d:(h*T+t)*d+d]
				for i := range dkt {
					dkt[i] += sk[i]
					dvt[i] += sv[i]
				}
			}
		}
	})
}

// attentionLoop is the direct causal loop of AttentionForward for both
// element types.
func attentionLoop[F Float](out, probs, q, k, v []F, T, past, nH, nKV int, kvMap []int, d int) {
	qs := nH * d
	Tk := past + T
	ParallelFor(nH, func(h int) {
		att := make([]F, Tk)
		for t := 0; t < T; t++ {
			ot := out[t*qs+h*d : t*qs+h*d+d]
			kh := KVHead(h, nH, nKV, kvMap)
			p := attnRow(att, q, k, t, past, h, kh, nH, nKV, d)
			clear(ot)
			for j, pj := range p {
				vj := v[j*nKV*d+kh*d : j*nKV*d+kh*d+d]
				for i, vv := range vj {
					ot[i] += pj * vv
				}
			}
			if probs != nil {
				copy(probs[(h*T+t)*Tk:], p)
			}
		}
	})
}
