package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// Every operation of the host device gives bitwise what the host code
// computed before the device interface: the nn kernels and train's losses
// and AdamW called directly on the same inputs. Sizes are large enough for
// the parallel paths (several workers, chunked reductions), and the
// attention covers the KV-cache and shared-prefix-chain layouts of
// model/layer.go.
func TestHostDeviceBitwise(t *testing.T) {
	be := cpu(t)
	t.Run("float32", func(t *testing.T) { hostBitwise[float32](t, be) })
	t.Run("float64", func(t *testing.T) { hostBitwise[float64](t, be) })
}

type bitw[F nn.Float] struct {
	t *testing.T
	d *nn.Host[F]
	r *rand.Rand
}

func (b *bitw[F]) rnd(n int, sc float64) []F { return randn[F](b.r, n, sc) }

// randn is n normal values of standard deviation sc, float32-representable
// (teacher logits are float32).
func randn[F nn.Float](r *rand.Rand, n int, sc float64) []F {
	x := make([]F, n)
	for i := range x {
		x[i] = F(float32(r.NormFloat64() * sc))
	}
	return x
}

// res makes a resident view of a copy of x (the device works in place on
// it; x stays for the direct call).
func (b *bitw[F]) res(x []F) (backend.View, []F) {
	c := slices.Clone(x)
	v, err := b.d.Resident(c)
	if err != nil {
		b.t.Fatal(err)
	}
	return v, c
}

func (b *bitw[F]) same(what string, got, want []F) {
	b.t.Helper()
	if err := b.d.Sync(); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	if len(got) != len(want) {
		b.t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float64bits(float64(got[i])) != math.Float64bits(float64(want[i])) {
			b.t.Fatalf("%s[%d] = %v, direct %v", what, i, got[i], want[i])
		}
	}
}

func hostBitwise[F nn.Float](t *testing.T, be backend.Backend) {
	b := &bitw[F]{t: t, d: nn.NewHost[F](be), r: rand.New(rand.NewPCG(3, 4))}
	d := b.d
	const m, n, k = 37, 129, 67
	for _, acc := range []bool{false, true} {
		A, B, C := b.rnd(m*k, 1), b.rnd(n*k, 1), b.rnd(m*n, 1)
		va, _ := b.res(A)
		vb, _ := b.res(B)
		vc, c := b.res(C)
		d.MatNT(vc, va, vb, m, n, k, acc)
		nn.MatNT(be, C, A, B, m, n, k, acc)
		b.same("MatNT", c, C)
		d.MatNN(vc, va, vb.Slice(0, k*n), m, n, k, acc)
		nn.MatNN(be, C, A, B[:k*n], m, n, k, acc)
		b.same("MatNN", c, C)
		vt, _ := b.res(A[:k*m])
		d.MatTN(vc, vt, vb, m, n, k, acc)
		nn.MatTN(be, C, A[:k*m], B, m, n, k, acc)
		b.same("MatTN", c, C)
	}
	if _, ok := any(b.d).(*nn.Host[float32]); ok {
		X := b.rnd(k*n, 1)
		H := make([]F, n*n)
		vx, _ := b.res(X)
		vh, h := b.res(H)
		d.Syrk(vh, vx, n, k)
		d.Syrk(vh, vx, n, k)
		be.SyrkTN(any(H).([]float32), any(X).([]float32), n, k)
		be.SyrkTN(any(H).([]float32), any(X).([]float32), n, k)
		b.same("Syrk", h, H)
	}

	const rows, dim = 41, 200
	X, W := b.rnd(rows*dim, 2), b.rnd(dim, 1)
	vx, _ := b.res(X)
	vw, _ := b.res(W)
	out, rstd := make([]F, rows*dim), make([]F, rows)
	vo, o := b.res(out)
	vr, r := b.res(rstd)
	d.RMSNorm(vo, vr, vx, vw, rows, dim, 1e-5)
	nn.RMSNormForwardT(out, rstd, X, W, rows, dim, 1e-5)
	b.same("RMSNorm", o, out)
	b.same("RMSNorm rstd", r, rstd)
	dX, dW, dO := b.rnd(rows*dim, 1), b.rnd(dim, 1), b.rnd(rows*dim, 1)
	vdx, dx := b.res(dX)
	vdw, dw := b.res(dW)
	vdo, _ := b.res(dO)
	d.RMSNormBackward(vdx, vdw, vdo, vx, vw, vr, rows, dim)
	nn.RMSNormBackward(dX, dW, dO, X, W, rstd, rows, dim)
	b.same("RMSNormBackward dx", dx, dX)
	b.same("RMSNormBackward dw", dw, dW)
	d.AddBias(vo, vw, rows)
	nn.AddBiasT(out, W, rows)
	b.same("AddBias", o, out)
	d.AddBiasBackward(vdw, vdo, rows)
	nn.AddBiasBackward(dW, dO, rows)
	b.same("AddBiasBackward", dw, dW)
	d.Add(vo, vdo)
	for i := range out {
		out[i] += dO[i]
	}
	b.same("Add", o, out)

	const nI = 70001 // several parallel chunks
	G, U, DO := b.rnd(nI, 3), b.rnd(nI, 1), b.rnd(nI, 1)
	vg, _ := b.res(G)
	vu, _ := b.res(U)
	vdo2, _ := b.res(DO)
	hh := make([]F, nI)
	vh, hs := b.res(hh)
	d.SiLUMul(vh, vg, vu)
	nn.SwiGLUForwardBE(be, hh, G, U)
	b.same("SiLUMul", hs, hh)
	dg, du := make([]F, nI), make([]F, nI)
	vdg, dgs := b.res(dg)
	vdu, dus := b.res(du)
	d.SwiGLUBackward(vdg, vdu, vdo2, vg, vu)
	nn.SwiGLUBackwardBE(be, dg, du, DO, G, U)
	b.same("SwiGLUBackward dgate", dgs, dg)
	b.same("SwiGLUBackward dup", dus, du)

	ids := []int{5, 0, 9, 5, 3, 3, 1}
	tab := b.rnd(10*dim, 1)
	vtab, tabs := b.res(tab)
	emb := make([]F, len(ids)*dim)
	vemb, embs := b.res(emb)
	d.Embed(vemb, vtab, ids, dim)
	nn.EmbeddingForwardT(emb, tab, ids, dim)
	b.same("Embed", embs, emb)
	dxe := b.rnd(len(ids)*dim, 1)
	vdxe, _ := b.res(dxe)
	d.EmbedBackward(vtab, vdxe, ids, dim)
	nn.EmbeddingBackward(tab, dxe, ids, dim)
	b.same("EmbedBackward", tabs, tab)

	hostBitwiseAttention(b, be)
	hostBitwiseLosses(b, be)
	if _, ok := any(b.d).(*nn.Host[float32]); ok {
		hostBitwiseAdamW(t, be)
		hostBitwiseClipSGD(t, be)
	}
}

// hostBitwiseAttention: rope, attention (own rows, a KV cache and a chain
// of segments) and the attention backward, as model/layer.go and
// train/graph.go call the kernels.
func hostBitwiseAttention[F nn.Float](b *bitw[F], be backend.Backend) {
	d := b.d
	const nH, nKV, D = 6, 4, 8
	kvMap := []int{3, 0, 0, 1, 3, 2}
	hd := backend.Heads{NH: nH, NKV: nKV, D: D, KVMap: kvMap}
	qd, kvd := nH*D, nKV*D
	// Segments: 0 (rows 0..9, pos 0), 1 (rows 10..14, child of 0: pos
	// 10..14, chain 0,1), 2 (rows 15..20, child of 1: chain 0,1,2), 3 (rows
	// 21..27, own, pos 0).
	type seg struct{ row, T, pos int }
	segs := []seg{{0, 10, 0}, {10, 5, 10}, {15, 6, 15}, {21, 7, 0}}
	chains := [][]int{{0}, {0, 1}, {0, 1, 2}, {3}}
	rows := 28
	for _, inter := range []bool{false, true} {
		rope := nn.NewRope(D, 10000, inter, nil)
		rope.Ensure(32)
		Q, K, V := b.rnd(rows*qd, 1), b.rnd(rows*kvd, 1), b.rnd(rows*kvd, 1)
		vq, qs := b.res(Q)
		vk, ks := b.res(K)
		vv, _ := b.res(V)
		var rs []backend.Seq
		for _, s := range segs {
			rs = append(rs, backend.Seq{Row: s.row, T: s.T, Pos: s.pos})
		}
		d.Rope(vq, rope, rs, nH, false)
		d.Rope(vk, rope, rs, nKV, false)
		for _, s := range segs {
			nn.RopeForwardT(rope, Q[s.row*qd:(s.row+s.T)*qd], s.T, nH, s.pos)
			nn.RopeForwardT(rope, K[s.row*kvd:(s.row+s.T)*kvd], s.T, nKV, s.pos)
		}
		b.same("Rope q", qs, Q)
		b.same("Rope k", ks, K)
		att := make([]F, rows*qd)
		vatt, atts := b.res(att)
		var as []backend.AttnSeq
		for i := range segs {
			a := backend.AttnSeq{Seq: rs[i]}
			if len(chains[i]) > 1 {
				for _, c := range chains[i] {
					a.K = append(a.K, vk.Rows(segs[c].row, segs[c].row+segs[c].T, kvd))
					a.V = append(a.V, vv.Rows(segs[c].row, segs[c].row+segs[c].T, kvd))
				}
			}
			as = append(as, a)
		}
		d.Attention(vatt, vq, vk, vv, as, hd)
		for i, s := range segs {
			ksg, vsg := K[s.row*kvd:(s.row+s.T)*kvd], V[s.row*kvd:(s.row+s.T)*kvd]
			if len(chains[i]) > 1 {
				var kb, vb []F
				for _, c := range chains[i] {
					kb = append(kb, K[segs[c].row*kvd:(segs[c].row+segs[c].T)*kvd]...)
					vb = append(vb, V[segs[c].row*kvd:(segs[c].row+segs[c].T)*kvd]...)
				}
				ksg, vsg = kb, vb
			}
			nn.AttentionForwardT(be, att[s.row*qd:(s.row+s.T)*qd], nil, Q[s.row*qd:(s.row+s.T)*qd], ksg, vsg, s.T, s.pos, nH, nKV, kvMap, D)
		}
		b.same("Attention (chains)", atts, att)

		// A KV cache: 9 cached rows then 3 new ones, one part.
		cache := b.rnd(12*kvd, 1)
		cachev := b.rnd(12*kvd, 1)
		vcache, _ := b.res(cache)
		vcachev, _ := b.res(cachev)
		oc := make([]F, 3*qd)
		voc, ocs := b.res(oc)
		d.Attention(voc, vq, backend.View{}, backend.View{}, []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 3, Pos: 9}, K: []backend.View{vcache}, V: []backend.View{vcachev}}}, hd)
		nn.AttentionForwardT(be, oc, nil, Q[:3*qd], cache, cachev, 3, 9, nH, nKV, kvMap, D)
		b.same("Attention (cache)", ocs, oc)

		// Training: independent sequences from position 0, the second
		// with saved probabilities; then the backward and the rope
		// backward as train.LayerBackward runs them.
		tr := []backend.AttnSeq{{Seq: backend.Seq{Row: 0, T: 13}}, {Seq: backend.Seq{Row: 13, T: 15}}}
		probs := make([]F, nH*15*15)
		vp, ps := b.res(probs)
		tr[1].Probs = vp
		d.Attention(vatt, vq, vk, vv, tr, hd)
		nn.AttentionForwardT(be, att[:13*qd], nil, Q[:13*qd], K[:13*kvd], V[:13*kvd], 13, 0, nH, nKV, kvMap, D)
		nn.AttentionForwardT(be, att[13*qd:], probs, Q[13*qd:], K[13*kvd:], V[13*kvd:], 15, 0, nH, nKV, kvMap, D)
		b.same("Attention (train)", atts, att)
		b.same("Attention probs", ps, probs)
		dout := b.rnd(rows*qd, 1)
		vdout, _ := b.res(dout)
		dq, dk, dv := b.rnd(rows*qd, 1), b.rnd(rows*kvd, 1), b.rnd(rows*kvd, 1)
		vdq, dqs := b.res(dq)
		vdk, dks := b.res(dk)
		vdv, dvs := b.res(dv)
		d.AttentionBackward(vdq, vdk, vdv, vdout, vq, vk, vv, tr, hd)
		trs := []backend.Seq{tr[0].Seq, tr[1].Seq}
		d.Rope(vdq, rope, trs, nH, true)
		d.Rope(vdk, rope, trs, nKV, true)
		clear(dq)
		clear(dk)
		clear(dv)
		for si, s := range trs {
			var p []F
			if si == 1 {
				p = probs
			}
			r0, T := s.Row, s.T
			dqq, dkk := dq[r0*qd:(r0+T)*qd], dk[r0*kvd:(r0+T)*kvd]
			nn.AttentionBackward(be, dqq, dkk, dv[r0*kvd:(r0+T)*kvd], dout[r0*qd:(r0+T)*qd],
				Q[r0*qd:(r0+T)*qd], K[r0*kvd:(r0+T)*kvd], V[r0*kvd:(r0+T)*kvd], p, T, nH, nKV, kvMap, D)
			nn.RopeBackwardT(rope, dqq, T, nH, 0)
			nn.RopeBackwardT(rope, dkk, T, nKV, 0)
		}
		b.same("AttentionBackward dq", dqs, dq)
		b.same("AttentionBackward dk", dks, dk)
		b.same("AttentionBackward dv", dvs, dv)
	}
}

func hostBitwiseLosses[F nn.Float](b *bitw[F], be backend.Backend) {
	d := b.d
	const V = 301
	seqs := [][]int{{1, 5, 7, 2, 9, 4}, {3}, {3, 300, 8, 0}}
	tg := rowTargets(seqs)
	rows := len(tg)
	z, zt := b.rnd(rows*V, 3), b.rnd(rows*V, 3)
	z[0*V+5] = 17   // confident
	z[1*V+7] = -150 // underflowing
	vz, _ := b.res(z)
	teacher32 := make([]float32, len(zt))
	for i, v := range zt {
		teacher32[i] = float32(v)
	}
	vzt, _ := b.res(zt)
	const w = 0.7
	dl := b.rnd(rows*V, 1)
	vdl, dls := b.res(dl)
	got, err := d.CrossEntropy(vdl, vz, tg, V, w)
	var want float64
	if dl32, ok := any(dl).([]float32); ok {
		want = crossEntropyInto(be, nn.BackendWorkers(be), dl32, any(z).([]float32), seqs, V, w)
	} else {
		clear(dl)
		want = CrossEntropy(dl, z, seqs, V, w)
	}
	if err != nil || math.Float64bits(got) != math.Float64bits(want) {
		b.t.Fatalf("CrossEntropy %v (%v), direct %v", got, err, want)
	}
	b.same("CrossEntropy dlogits", dls, dl)
	got, err = d.CrossEntropy(backend.View{}, vz, tg, V, w)
	if want := CrossEntropy(nil, z, seqs, V, w); err != nil || math.Float64bits(got) != math.Float64bits(want) {
		b.t.Fatalf("CrossEntropy (loss only) %v (%v), direct %v", got, err, want)
	}
	got, err = d.KL(vdl, vz, vzt, tg, V, w)
	if want := KL(dl, z, teacher32, seqs, V, w); err != nil || math.Float64bits(got) != math.Float64bits(want) {
		b.t.Fatalf("KL %v (%v), direct %v", got, err, want)
	}
	b.same("KL dlogits", dls, dl)
	tk := NewTopKLogits(teacher32, rows, V, 5)
	got, err = d.SparseKL(vdl, vz, tk.Idx, tk.Val, tk.K, tg, V, w)
	if want := SparseKLCached(dl, z, tk, seqs, V, w); err != nil || math.Float64bits(got) != math.Float64bits(want) {
		b.t.Fatalf("SparseKL %v (%v), direct %v", got, err, want)
	}
	b.same("SparseKL dlogits", dls, dl)
}

// hostBitwiseAdamW: AdamW steps on the device with train's step scalars
// equal train.AdamW's steps, including a tensor updated in parallel chunks.
func hostBitwiseAdamW(t *testing.T, be backend.Backend) {
	r := rand.New(rand.NewPCG(9, 9))
	mk := func(n int, sc float64) []float32 { return randn[float32](r, n, sc) }
	sizes := []int{37, nn.AdamWParallel + 13}
	var params, grads []Tensor[float32]
	for _, n := range sizes {
		params = append(params, Tensor[float32]{Data: mk(n, 1)})
		grads = append(grads, Tensor[float32]{Data: mk(n, 1e-2)})
	}
	d := nn.NewHost[float32](be)
	type st struct{ w, m, v backend.View }
	var dev []st
	for _, p := range params {
		w, _ := d.Resident(slices.Clone(p.Data))
		m, _ := d.Alloc(len(p.Data))
		v, _ := d.Alloc(len(p.Data))
		dev = append(dev, st{w, m, v})
	}
	o := NewAdamW(0.9, 0.999, 1e-8, 0.1)
	shadow := NewAdamW(0.9, 0.999, 1e-8, 0.1) // its step counter gives the device's scalars
	for step := 0; step < 3; step++ {
		lr := 1e-3 * float64(step+1)
		o.Step(params, grads, lr)
		shadow.t++
		c := shadow.stepConsts(lr)
		for i, s := range dev {
			g, _ := d.Resident(grads[i].Data)
			d.AdamW(s.w, g, s.m, s.v, c)
		}
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range dev {
		w, _ := d.Host(s.w)
		m, _ := d.Host(s.m)
		v, _ := d.Host(s.v)
		for j := range w {
			if math.Float32bits(w[j]) != math.Float32bits(params[i].Data[j]) || m[j] != o.m[i][j] || v[j] != o.v[i][j] {
				t.Fatalf("AdamW tensor %d [%d]: device (%v %v %v), train (%v %v %v)", i, j, w[j], m[j], v[j], params[i].Data[j], o.m[i][j], o.v[i][j])
			}
		}
	}
}

// hostBitwiseClipSGD: the device's SumSquares, Scale and SGD give bitwise
// train's GradNorm, ClipGrads and SGD, and those give bitwise the loops
// train ran before the kernels moved to nn (written out here: a float64
// sum in tensor order, g *= float32(coef), SGD in float64 rounded once),
// on tensors large enough for the parallel chunks.
func hostBitwiseClipSGD(t *testing.T, be backend.Backend) {
	r := rand.New(rand.NewPCG(5, 11))
	mk := func(n int, sc float64) []float32 { return randn[float32](r, n, sc) }
	sizes := []int{37, 1<<15 + 1, 3<<15 + 77, 5}
	var grads, old []Tensor[float32]
	for _, n := range sizes {
		g := mk(n, 1e-2)
		grads = append(grads, Tensor[float32]{Data: g})
		old = append(old, Tensor[float32]{Data: slices.Clone(g)})
	}
	d := nn.NewHost[float32](be)
	views := make([]backend.View, len(grads))
	for i, g := range grads {
		views[i], _ = d.Resident(g.Data) // the same slices
	}
	// The norm.
	var s float64
	for _, g := range old {
		for _, v := range g.Data {
			s += float64(v) * float64(v)
		}
	}
	ss, err := d.SumSquares(views)
	if err != nil {
		t.Fatal(err)
	}
	if math.Float64bits(ss) != math.Float64bits(s) || math.Float64bits(GradNorm(grads)) != math.Float64bits(math.Sqrt(s)) {
		t.Fatalf("SumSquares %v, GradNorm² %v, the old loop %v", ss, GradNorm(grads), s)
	}
	// Clipping: ClipGrads on one copy, Scale on the device on another.
	norm := math.Sqrt(s)
	c := float32(0.5 / (norm + 1e-6))
	for _, g := range old {
		for i := range g.Data {
			g.Data[i] *= c
		}
	}
	dg := make([]Tensor[float32], len(grads))
	for i, g := range grads {
		dg[i] = Tensor[float32]{Data: slices.Clone(g.Data)}
	}
	if n := ClipGrads(dg, 0.5); n != norm {
		t.Fatalf("ClipGrads returned %v, want %v", n, norm)
	}
	for _, v := range views {
		d.Scale(v, c)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := range grads {
		if !slices.Equal(grads[i].Data, old[i].Data) || !slices.Equal(dg[i].Data, old[i].Data) {
			t.Fatalf("clipping tensor %d: device, ClipGrads and the old loop differ", i)
		}
	}
	// SGD with weight decay.
	lr, wd := 0.037, 0.01
	var ws, wold []Tensor[float32]
	wv := make([]backend.View, len(sizes))
	for i, n := range sizes {
		w := mk(n, 1)
		ws = append(ws, Tensor[float32]{Data: slices.Clone(w)})
		wold = append(wold, Tensor[float32]{Data: slices.Clone(w)})
		wv[i], _ = d.Resident(w)
	}
	(&SGD{WeightDecay: wd}).Step(ws, grads, lr)
	for pi, p := range wold {
		w, g := p.Data, grads[pi].Data
		for i := range w {
			wi := float64(w[i])
			w[i] = float32(wi - lr*(float64(g[i])+wd*wi))
		}
	}
	for i := range wv {
		d.SGD(wv[i], views[i], lr, wd)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := range ws {
		dw, _ := d.Host(wv[i])
		if !slices.Equal(ws[i].Data, wold[i].Data) || !slices.Equal(dw, wold[i].Data) {
			t.Fatalf("SGD tensor %d: device, train.SGD and the old loop differ", i)
		}
	}
}
