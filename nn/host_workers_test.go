package nn

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

// hostScript runs a fixed sequence of host-device operations (products,
// norms and their backward, attention and its backward, the fast
// cross-entropy, a chunked AdamW) and returns every output.
func hostScript(t *testing.T, be backend.Backend) [][]float32 {
	d := NewHost[float32](be)
	r := rand.New(rand.NewPCG(11, 12))
	mk := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	var outs [][]float32
	res := func(x []float32) backend.View {
		v, _ := d.Resident(x)
		outs = append(outs, x)
		return v
	}
	const m, n, k = 64, 96, 80
	a, b, c := res(mk(m*k)), res(mk(n*k)), res(mk(m*n))
	d.MatNT(c, a, b, m, n, k, true)
	d.MatTN(res(mk(k*n)), a, c, k, n, m, false)
	const rows, dim = 40, 96
	x, w, o, rs := res(mk(rows*dim)), res(mk(dim)), res(mk(rows*dim)), res(mk(rows))
	d.RMSNorm(o, rs, x, w, rows, dim, 1e-5)
	d.RMSNormBackward(res(mk(rows*dim)), res(mk(dim)), res(mk(rows*dim)), x, w, rs, rows, dim)
	hd := backend.Heads{NH: 4, NKV: 2, D: 8, KVMap: []int{1, 0, 1, 1}}
	q, kk, vv := res(mk(rows*32)), res(mk(rows*16)), res(mk(rows*16))
	seqs := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 17}}, {Seq: backend.Seq{Row: 17, T: 23}}}
	d.Attention(res(mk(rows*32)), q, kk, vv, seqs, hd)
	d.AttentionBackward(res(mk(rows*32)), res(mk(rows*16)), res(mk(rows*16)), res(mk(rows*32)), q, kk, vv, seqs, hd)
	const V = 257
	tg := make([]int, rows)
	for i := range tg {
		tg[i] = (i*37)%V - 1
	}
	ce, err := d.CrossEntropy(res(mk(rows*V)), res(mk(rows*V)), tg, V, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, []float32{float32(ce), float32(ce - float64(float32(ce)))})
	big := AdamWParallel + 77
	g := mk(big)
	g[big-1] = float32(math.Inf(1))
	d.AdamW(res(mk(big)), res(g), res(make([]float32, big)), res(make([]float32, big)),
		backend.AdamWStep{Decay: 0.999, B1: 0.9, C1: 0.1, B2: 0.999, C2: 0.001, BC2s: 0.03, Eps: 1e-8, NegLR1: -0.01})
	if err := d.Sync(); err != backend.ErrNonFinite {
		t.Fatalf("Sync: %v, want ErrNonFinite", err)
	}
	return outs
}

// The host device's results do not depend on the number of workers (Go's
// GOMAXPROCS and the CPU backend's workers).
func TestHostWorkerIndependent(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	one := hostScript(t, cpu.New().WithWorkers(1))
	runtime.GOMAXPROCS(4)
	four := hostScript(t, cpu.New().WithWorkers(4))
	for i := range one {
		for j := range one[i] {
			if math.Float32bits(one[i][j]) != math.Float32bits(four[i][j]) {
				t.Fatalf("output %d [%d]: 1 worker %v, 4 workers %v", i, j, one[i][j], four[i][j])
			}
		}
	}
}
