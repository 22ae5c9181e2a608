//go:build vulkan && cgo

package vulkan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/train"
)

// splitLimit is the binding limit of the split device: about 120 floats,
// below every large operand of TestSplitBitwise (log its chunk counts with
// -v) and above one row of each.
const splitLimit = 512

// TestSplitBitwise runs every operation that splits its operands once on a
// device that binds them whole and once with bindings of splitLimit bytes,
// and requires bitwise equal results: the chunking must not change any
// element's arithmetic (losses per row, summed in row order on the host;
// embedding gradients per table range in row order; attention per query
// row or sequence). The float64 references are TestConformanceSplit's.
func TestSplitBitwise(t *testing.T) {
	for _, staging := range []bool{false, true} {
		t.Run(fmt.Sprintf("staging=%v", staging), func(t *testing.T) {
			splitBitwise(t, open(t, Options{ForceStaging: staging}).F32(), open(t, Options{MaxBindBytes: splitLimit, ForceStaging: staging}).F32())
		})
	}
}

// splitBitwise is TestSplitBitwise on a pair of devices (staging: unmapped
// device buffers, the path of discrete GPUs).
func splitBitwise(t *testing.T, whole, split *Dev) {
	if lim := split.d.maxElems(F32); lim > 130 {
		t.Fatalf("split device binds %d floats", lim)
	}
	cases := []struct {
		name string
		run  func(t *testing.T, x *Dev, r *rand.Rand) [][]float32
	}{
		{"Gemm", splitGemm},
		{"Losses", splitLosses},
		{"Embed", splitEmbed},
		{"Rope", splitRope},
		{"RowOps", splitRowOps},
		{"Elementwise", splitElementwise},
		{"Attention", splitAttention},
		{"AttentionBackward", splitAttentionBackward},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.run(t, whole, rand.New(rand.NewPCG(21, 21)))
			n0 := split.d.ndispatches
			got := c.run(t, split, rand.New(rand.NewPCG(21, 21)))
			n1 := split.d.ndispatches
			m0 := whole.d.ndispatches
			c.run(t, whole, rand.New(rand.NewPCG(21, 21)))
			t.Logf("%d commands split, %d whole", n1-n0, whole.d.ndispatches-m0)
			if n1-n0 <= whole.d.ndispatches-m0 {
				t.Errorf("the split device recorded %d commands, the whole one %d: nothing was split", n1-n0, whole.d.ndispatches-m0)
			}
			if len(got) != len(want) {
				t.Fatalf("%d outputs, want %d", len(got), len(want))
			}
			for i := range want {
				if len(got[i]) != len(want[i]) {
					t.Fatalf("output %d: %d values, want %d", i, len(got[i]), len(want[i]))
				}
				for j := range want[i] {
					if math.Float32bits(got[i][j]) != math.Float32bits(want[i][j]) {
						t.Fatalf("output %d [%d]: split %v, whole %v", i, j, got[i][j], want[i][j])
					}
				}
			}
		})
	}
}

// f32s turns float64 results into float32 bit patterns for the comparison
// (two float32 words each, so that a float64 must match exactly too).
func f32s(v ...float64) []float32 {
	o := make([]float32, 0, 2*len(v))
	for _, x := range v {
		b := math.Float64bits(x)
		o = append(o, math.Float32frombits(uint32(b>>32)), math.Float32frombits(uint32(b)))
	}
	return o
}

func must(t *testing.T, x *Dev) {
	t.Helper()
	if err := x.Sync(); err != nil {
		t.Fatal(err)
	}
}

// splitGemm: products whose k is split into blocks (TN, Syrk: the rows of
// both operands are the k dimension) carry their sums between blocks.
func splitGemm(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	const m, n, k = 13, 17, 50
	var outs [][]float32
	for _, acc := range []bool{false, true} {
		a, b := padded(t, x, randVec(r, m*k)), padded(t, x, randVec(r, n*k))
		c := padded(t, x, randVec(r, m*n))
		x.MatNT(c, a, b, m, n, k, acc)
		c2 := padded(t, x, randVec(r, m*n))
		x.MatTN(c2, a, padded(t, x, randVec(r, k*n)), m, n, k, acc)
		c3 := padded(t, x, randVec(r, m*n))
		x.MatNN(c3, a, padded(t, x, randVec(r, k*n)), m, n, k, acc)
		hs := padded(t, x, randVec(r, n*n))
		x.Syrk(hs, b, n, k)
		must(t, x)
		outs = append(outs, get(t, x, c), get(t, x, c2), get(t, x, c3), get(t, x, hs))
	}
	return outs
}

func splitLosses(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	const rows, vocab, k = 37, 50, 5
	z := randVec(r, rows*vocab)
	teacher := randVec(r, rows*vocab)
	targets := make([]int, rows)
	for i := range targets {
		targets[i] = r.IntN(vocab+1) - 1 // some rows without a target
	}
	idx, val := make([]int32, rows*k), make([]float32, rows*k)
	for i := 0; i < rows; i++ {
		for j, c := range r.Perm(vocab)[:k] {
			idx[i*k+j], val[i*k+j] = int32(c), float32(r.NormFloat64())
		}
	}
	zv, tv := padded(t, x, z), padded(t, x, teacher)
	dz := padded(t, x, make([]float32, rows*vocab))
	ce, err := x.CrossEntropy(dz, zv, targets, vocab, 0.7)
	if err != nil {
		t.Fatal(err)
	}
	kl, err := x.KL(dz, zv, tv, targets, vocab, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	skl, err := x.SparseKL(dz, zv, idx, val, k, targets, vocab, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	return [][]float32{f32s(ce, kl, skl), get(t, x, dz)}
}

func splitEmbed(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	const vocab, dim, n = 60, 10, 40
	tab := randVec(r, vocab*dim)
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(vocab)
	}
	ids[5], ids[30], ids[31] = ids[2], ids[2], ids[2] // repeated ids sum in row order
	vt := padded(t, x, tab)
	out := padded(t, x, make([]float32, n*dim))
	x.Embed(out, vt, ids, dim)
	dtab := padded(t, x, randVec(r, vocab*dim))
	x.EmbedBackward(dtab, padded(t, x, randVec(r, n*dim)), ids, dim)
	must(t, x)
	return [][]float32{get(t, x, out), get(t, x, dtab)}
}

func splitRope(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	const rows, nh, hd = 40, 2, 8
	rp := newTestRope(hd, false, 120)
	seqs := []backend.Seq{{Row: 0, T: 12, Pos: 0}, {Row: 15, T: 20, Pos: 90}, {Row: 12, T: 3, Pos: 7}, {Row: 35, T: 5, Pos: 30}}
	var outs [][]float32
	for _, inv := range []bool{false, true} {
		xv := padded(t, x, randVec(r, rows*nh*hd))
		x.Rope(xv, rp, seqs, nh, inv)
		outs = append(outs, get(t, x, xv))
	}
	return outs
}

func splitRowOps(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	const rows, cols = 50, 9
	m := padded(t, x, randVec(r, rows*cols))
	b := padded(t, x, randVec(r, cols))
	x.AddBias(m, b, rows)
	db := padded(t, x, randVec(r, cols))
	x.AddBiasBackward(db, padded(t, x, randVec(r, rows*cols)), rows)
	xs, w := padded(t, x, randVec(r, rows*cols)), padded(t, x, randVec(r, cols))
	out, rstd := padded(t, x, make([]float32, rows*cols)), padded(t, x, make([]float32, rows))
	x.RMSNorm(out, rstd, xs, w, rows, cols, 1e-5)
	dx, dw := padded(t, x, randVec(r, rows*cols)), padded(t, x, randVec(r, cols))
	x.RMSNormBackward(dx, dw, padded(t, x, randVec(r, rows*cols)), xs, w, rstd, rows, cols)
	must(t, x)
	return [][]float32{get(t, x, m), get(t, x, db), get(t, x, out), get(t, x, rstd), get(t, x, dx), get(t, x, dw)}
}

func splitElementwise(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	const n = 1000
	a, b := padded(t, x, randVec(r, n)), padded(t, x, randVec(r, n))
	x.Add(a, b)
	c := padded(t, x, make([]float32, n))
	x.Copy(c, a)
	x.Scale(c, 0.37)
	w, g := padded(t, x, randVec(r, n)), padded(t, x, randVec(r, n))
	x.SGD(w, g, 0.01, 0.1)
	m, v := padded(t, x, randVec(r, n)), padded(t, x, make([]float32, n))
	aw := padded(t, x, randVec(r, n))
	x.AdamW(aw, g, m, v, backend.AdamWStep{Decay: 0.999, B1: 0.9, C1: 0.1, B2: 0.99, C2: 0.01, BC2s: 0.5, Eps: 1e-8, NegLR1: -0.01})
	s, up := padded(t, x, randVec(r, n)), padded(t, x, randVec(r, n))
	x.SiLUMul(s, s, up)
	dg, du := padded(t, x, make([]float32, n)), padded(t, x, make([]float32, n))
	x.SwiGLUBackward(dg, du, padded(t, x, randVec(r, n)), a, up)
	must(t, x)
	return [][]float32{get(t, x, a), get(t, x, c), get(t, x, w), get(t, x, aw), get(t, x, m), get(t, x, v),
		get(t, x, s), get(t, x, dg), get(t, x, du)}
}

// splitAttention: own keys with and without saved probabilities (one
// sequence's block over a binding: compact rows copied out), and keys in
// parts at Pos > 0 (gathered), GQA.
func splitAttention(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	h := backend.Heads{NH: 4, NKV: 2, D: 3}
	qs, kvs := h.NH*h.D, h.NKV*h.D
	const rows = 36
	q, k, v := padded(t, x, randVec(r, rows*qs)), padded(t, x, randVec(r, rows*kvs)), padded(t, x, randVec(r, rows*kvs))
	out := padded(t, x, make([]float32, rows*qs))
	pBig := padded(t, x, randVec(r, h.NH*9*9)) // 324 floats: over a binding, stale values must be cleared
	pSmall := padded(t, x, make([]float32, h.NH*2*2))
	pGat := padded(t, x, make([]float32, h.NH*2*(6+2)))
	pGatBig := padded(t, x, randVec(r, h.NH*6*16)) // 384 floats, keys in parts
	kp1, kp2 := padded(t, x, randVec(r, 5*kvs)), padded(t, x, randVec(r, 3*kvs))
	vp1, vp2 := padded(t, x, randVec(r, 5*kvs)), padded(t, x, randVec(r, 3*kvs))
	seqs := []backend.AttnSeq{
		{Seq: backend.Seq{Row: 0, T: 9}, Probs: pBig},
		{Seq: backend.Seq{Row: 9, T: 2}, Probs: pSmall},
		{Seq: backend.Seq{Row: 11, T: 10}},
		{Seq: backend.Seq{Row: 21, T: 2, Pos: 6}, K: []backend.View{kp1, kp2}, V: []backend.View{vp1, vp2}, Probs: pGat},
		{Seq: backend.Seq{Row: 23, T: 7, Pos: 1}, K: []backend.View{k.Slice(0, 8*kvs)}, V: []backend.View{v.Slice(0, 8*kvs)}},
		{Seq: backend.Seq{Row: 30, T: 6, Pos: 10}, K: []backend.View{k.Slice(kvs, 7*kvs), k.Slice(14*kvs, 9*kvs)},
			V: []backend.View{v.Slice(2*kvs, 7*kvs), v.Slice(20*kvs, 9*kvs)}, Probs: pGatBig},
	}
	x.Attention(out, q, k, v, seqs, h)
	must(t, x)
	return [][]float32{get(t, x, out), get(t, x, pBig), get(t, x, pSmall), get(t, x, pGat), get(t, x, pGatBig)}
}

// splitAttentionBackward: groups of sequences over row windows (NH 2, one
// K/V head) and sequences whose probabilities exceed a binding, run in
// groups of K/V heads (NH 4 over NKV 2: 196 probabilities per sequence of
// 7, 98 per K/V head; and a KVMap whose K/V heads' query heads interleave).
func splitAttentionBackward(t *testing.T, x *Dev, r *rand.Rand) [][]float32 {
	var outs [][]float32
	for _, h := range []backend.Heads{{NH: 2, NKV: 1, D: 4}, {NH: 4, NKV: 2, D: 2}, {NH: 4, NKV: 2, D: 2, KVMap: []int{1, 0, 0, 1}}} {
		qs, kvs := h.NH*h.D, h.NKV*h.D
		const rows = 24
		q, k, v := padded(t, x, randVec(r, rows*qs)), padded(t, x, randVec(r, rows*kvs)), padded(t, x, randVec(r, rows*kvs))
		dout := padded(t, x, randVec(r, rows*qs))
		for _, saved := range []bool{false, true} {
			seqs := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 7}}, {Seq: backend.Seq{Row: 7, T: 5}}, {Seq: backend.Seq{Row: 12, T: 7}}, {Seq: backend.Seq{Row: 19, T: 5}}}
			if saved {
				out := padded(t, x, make([]float32, rows*qs))
				for i := range seqs {
					seqs[i].Probs = padded(t, x, make([]float32, h.NH*seqs[i].T*seqs[i].T))
				}
				x.Attention(out, q, k, v, seqs, h)
			}
			dq, dk, dv := padded(t, x, make([]float32, rows*qs)), padded(t, x, make([]float32, rows*kvs)), padded(t, x, make([]float32, rows*kvs))
			x.AttentionBackward(dq, dk, dv, dout, q, k, v, seqs, h)
			must(t, x)
			outs = append(outs, get(t, x, dq), get(t, x, dk), get(t, x, dv))
		}
	}
	return outs
}

// TestSumSquaresSplitBitwise: SumSquares over views split into windows of
// whole workgroups gives bitwise the sum of one binding (its workgroups sum
// at least 4096 floats, so the limit here is 32 KiB).
func TestSumSquaresSplitBitwise(t *testing.T) {
	var sums [2]float64
	for i, o := range []Options{{}, {MaxBindBytes: 1 << 15}} {
		x := open(t, o).F32()
		r := rand.New(rand.NewPCG(4, 4))
		vs := []backend.View{padded(t, x, randVec(r, 50_000)), padded(t, x, randVec(r, 3000)), padded(t, x, randVec(r, 2_000_000))}
		n0 := x.d.ndispatches
		s, err := x.SumSquares(vs)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d dispatches", x.d.ndispatches-n0)
		sums[i] = s
	}
	if sums[0] != sums[1] {
		t.Errorf("split %v, whole %v", sums[1], sums[0])
	}
}

// TestSplitLimitErrors: what does not split names the limit and the size.
func TestSplitLimitErrors(t *testing.T) {
	x := open(t, Options{MaxBindBytes: splitLimit}).F32()
	lim := x.d.maxElems(F32)
	r := rand.New(rand.NewPCG(3, 3))
	// One attention query whose keys exceed a binding.
	h := backend.Heads{NH: 1, NKV: 1, D: 8}
	T := lim/8 + 2
	q, k, v := put(t, x, randVec(r, T*8)), put(t, x, randVec(r, T*8)), put(t, x, randVec(r, T*8))
	out, _ := x.Alloc(T * 8)
	x.Attention(out, q, k, v, []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: T}}}, h)
	wantErr(t, x, "Attention", "attention does not split one query's keys")
	x.AttentionBackward(out, k, v, out, q, k, v, []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: T}}}, h)
	wantErr(t, x, "AttentionBackward", "does not split one sequence's rows")
	x.AttentionBackward(out, k, v, out, q, k, v, []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 12}}}, h)
	wantErr(t, x, "AttentionBackward", "144 probabilities, over one binding")

	// One embedding row over a binding.
	tab := put(t, x, randVec(r, 2*(lim+1)))
	x.Embed(out, tab, []int{1}, lim+1)
	wantErr(t, x, "Embed", fmt.Sprintf("one row of %d floats exceeds maxStorageBufferRange (%d bytes)", lim+1, splitLimit))
}

func wantErr(t *testing.T, x *Dev, op, msg string) {
	t.Helper()
	err := x.Sync()
	t.Log(err)
	if err == nil || !containsAll(err.Error(), "vulkan: "+op, msg) {
		t.Errorf("%s: error %v, want one naming %q", op, err, msg)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, p := range subs {
		if !contains(s, p) {
			return false
		}
	}
	return true
}

func contains(s, p string) bool {
	for i := 0; i+len(p) <= len(s); i++ {
		if s[i:i+len(p)] == p {
			return true
		}
	}
	return false
}

// TestDeviceGraphSplit: the training graph's forward, device cross-entropy
// and backward of both tiny models on a device with 24 KiB bindings (6139
// floats: the embedding tables, logits, activations and each sequence's
// attention probabilities exceed a binding; one sequence's rows, and one
// K/V head's probabilities, fit) give bitwise the loss and gradients of a
// device that binds every operand whole.
func TestDeviceGraphSplit(t *testing.T) {
	needMirror(t)
	whole, split := open(t, Options{}), open(t, Options{MaxBindBytes: 24 << 10})
	for mi, spec := range []string{"hf:raincandy-u/TinyStories-656K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"} {
		for _, save := range []bool{false, true} {
			var loss [2]float64
			var grads [2][]train.Tensor[float32]
			var cmds [2]int
			for i, d := range []*Device{whole, split} {
				dev := d.F32()
				m := openModel(t, spec)
				if i == 0 {
					t.Logf("%s: vocab %d, hidden %d, %d heads over %d K/V heads", spec, m.Cfg.Vocab, m.Cfg.Hidden, m.Cfg.Heads, m.Cfg.KVHeads)
				}
				seqs := pseudoSeqs(3, 37+mi, m.Cfg.Vocab)
				seqs[1] = seqs[1][:20]
				r, err := m.Upload(dev)
				if err != nil {
					t.Fatal(err)
				}
				n0 := d.ndispatches
				loss[i], grads[i] = graphLossGrads(t, r, m, seqs, save)
				cmds[i] = d.ndispatches - n0
				r.Release()
			}
			t.Logf("%s, saved probabilities %v: %d commands split, %d whole", spec, save, cmds[1], cmds[0])
			if cmds[1] <= cmds[0] {
				t.Errorf("nothing was split")
			}
			if loss[0] != loss[1] {
				t.Errorf("%s: loss split %v, whole %v", spec, loss[1], loss[0])
			}
			for k, g := range grads[0] {
				for j, v := range g.Data {
					if math.Float32bits(v) != math.Float32bits(grads[1][k].Data[j]) {
						t.Fatalf("%s %s [%d]: split %v, whole %v", spec, g.Name, j, grads[1][k].Data[j], v)
					}
				}
			}
		}
	}
}
