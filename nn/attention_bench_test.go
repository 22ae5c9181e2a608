package nn

import (
	"fmt"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// BenchmarkAttention compares the direct causal loop with the GEMM
// formulation at the TinyStories-656K shape (8 heads, 4 KV heads, d=16) and a
// 7B-like head (d=128).
func BenchmarkAttention(b *testing.B) {
	for _, c := range []struct{ T, nH, nKV, d int }{{512, 8, 4, 16}, {512, 8, 8, 128}} {
		q := make([]float32, c.T*c.nH*c.d)
		k := make([]float32, c.T*c.nKV*c.d)
		v := make([]float32, len(k))
		for i := range q {
			q[i] = float32(i%7) * 0.1
		}
		for i := range k {
			k[i], v[i] = float32(i%5)*0.1, float32(i%3)
		}
		out := make([]float32, len(q))
		flops := float64(4 * c.T * c.T / 2 * c.nH * c.d)
		b.Run(fmt.Sprintf("loop/T=%d/h=%d/d=%d", c.T, c.nH, c.d), func(b *testing.B) {
			for b.Loop() {
				AttentionForward(out, nil, q, k, v, c.T, 0, c.nH, c.nKV, nil, c.d)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		for _, name := range backend.Names() {
			be, _ := backend.Get(name)
			b.Run(fmt.Sprintf("gemm-%s/T=%d/h=%d/d=%d", name, c.T, c.nH, c.d), func(b *testing.B) {
				for b.Loop() {
					AttentionForwardGEMM(be, out, nil, q, k, v, c.T, 0, c.nH, c.nKV, nil, c.d)
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkAttentionBackward is the attention of one TinyStories-656K layer
// in a FineTune step (T = 128, 8 heads over 4 K/V heads, d = 16): the
// forward pass and the backward pass with the probabilities recomputed.
//
//	go test -run '^$' -bench AttentionBackward ./nn/
func BenchmarkAttentionBackward(b *testing.B) {
	const T, nH, nKV, d = 128, 8, 4, 16
	be, err := backend.Get("")
	if err != nil {
		b.Fatal(err)
	}
	x := func(n int, s float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i*7%13-6) * s
		}
		return v
	}
	q, k, v, dout := x(T*nH*d, 0.1), x(T*nKV*d, 0.07), x(T*nKV*d, 0.3), x(T*nH*d, 0.01)
	out, dq, dk, dv := make([]float32, len(q)), make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(k))
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			AttentionForwardT(be, out, nil, q, k, v, T, 0, nH, nKV, nil, d)
		}
	})
	b.Run("backward", func(b *testing.B) {
		for b.Loop() {
			AttentionBackward(be, dq, dk, dv, dout, q, k, v, nil, T, nH, nKV, nil, d)
		}
	})
}
