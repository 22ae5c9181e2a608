package nn

import (
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
)

// AttentionForwardGEMM computes exactly what AttentionForward computes (same
// layouts, same causal masking, same float64 softmax normaliser) but runs the
// two products of every KV group, S = Q·Kᵀ and O = P·V, as matrix products on
// the backend, so they use its SIMD (or GPU) kernels. The query heads of one
// KV group are stacked so each group costs one product of each kind. The
// masked upper triangle is computed and discarded: twice the flops of a
// causal loop, but at GEMM speed.
func AttentionForwardGEMM(be backend.Backend, out, probs, q, k, v []float32, T, past, nH, nKV, d int) {
	group := nH / nKV
	Tk := past + T
	scale := float32(1 / math.Sqrt(float64(d)))
	qs, kvs := nH*d, nKV*d
	rows := group * T // stacked query rows of one group: row = g*T + t
	qg := make([]float32, rows*d)
	kh := make([]float32, Tk*d)
	vh := make([]float32, Tk*d)
	s := make([]float32, rows*Tk)
	og := make([]float32, rows*d)
	for g := 0; g < nKV; g++ {
		for j := 0; j < Tk; j++ {
			copy(kh[j*d:(j+1)*d], k[j*kvs+g*d:j*kvs+g*d+d])
			copy(vh[j*d:(j+1)*d], v[j*kvs+g*d:j*kvs+g*d+d])
		}
		for hi := 0; hi < group; hi++ {
			h := g*group + hi
			for t := 0; t < T; t++ {
				copy(qg[(hi*T+t)*d:(hi*T+t+1)*d], q[t*qs+h*d:t*qs+h*d+d])
			}
		}
		be.MatMulNT(s, qg, kh, rows, Tk, d, false)
		ParallelFor(group, func(hi int) {
			for t := 0; t < T; t++ {
				row := s[(hi*T+t)*Tk : (hi*T+t+1)*Tk]
				last := past + t
				softmaxCausalRow(row, last, scale)
				if probs != nil {
					h := g*group + hi
					copy(probs[(h*T+t)*Tk:(h*T+t)*Tk+last+1], row[:last+1])
				}
			}
		})
		be.MatMulNN(og, s, vh, rows, d, Tk, false)
		for hi := 0; hi < group; hi++ {
			h := g*group + hi
			for t := 0; t < T; t++ {
				copy(out[t*qs+h*d:t*qs+h*d+d], og[(hi*T+t)*d:(hi*T+t+1)*d])
			}
		}
	}
}

// softmaxCausalRow turns raw scores row[0..last] into probabilities of
// softmax(scale·row) and zeroes the masked tail row[last+1:].
func softmaxCausalRow(row []float32, last int, scale float32) {
	mx := float32(math.Inf(-1))
	for j := 0; j <= last; j++ {
		row[j] *= scale
		if row[j] > mx {
			mx = row[j]
		}
	}
	var sum float64
	for j := 0; j <= last; j++ {
		e := float32(math.Exp(float64(row[j] - mx)))
		row[j] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for j := 0; j <= last; j++ {
		row[j] *= inv
	}
	clear(row[last+1:])
}
