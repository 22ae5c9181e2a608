//go:build vulkan && cgo

package vulkan

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// relErr is |got−want| / max(|scale|, tiny), worst over the elements.
func relErr(got, want []float32, scale func(i int) float64) (float64, int) {
	w, at := 0.0, -1
	for i := range want {
		e := math.Abs(float64(got[i])-float64(want[i])) / math.Max(scale(i), 1e-30)
		if e > w || math.IsNaN(e) {
			w, at = e, i
		}
	}
	return w, at
}

func absOf(v []float32) func(int) float64 {
	return func(i int) float64 { return math.Abs(float64(v[i])) }
}

func TestRMSNorm(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(11, 12))
	for _, sh := range [][2]int{{1, 1}, {13, 77}, {5, 300}, {3, 1001}} {
		rows, dim := sh[0], sh[1]
		x, w := randVec(r, rows*dim), randVec(r, dim)
		want, wrs := make([]float32, rows*dim), make([]float32, rows)
		nn.RMSNormForward(want, wrs, x, w, rows, dim, 1e-5)
		bx, bw := upload(t, d, x), upload(t, d, w)
		bo, brs := upload(t, d, make([]float32, rows*dim)), upload(t, d, make([]float32, rows))
		if err := d.RMSNorm(bo.All(), brs.All(), bx.All(), bw.All(), rows, dim, 1e-5); err != nil {
			t.Fatal(err)
		}
		// in place, no rstd
		if err := d.RMSNorm(bx.All(), View{}, bx.All(), bw.All(), rows, dim, 1e-5); err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string][]float32{"out": download(t, bo), "in-place": download(t, bx)} {
			if e, i := relErr(got, want, absOf(want)); e > tol {
				t.Errorf("%v %s: rel %.2e at %d", sh, name, e, i)
			}
		}
		if e, i := relErr(download(t, brs), wrs, absOf(wrs)); e > tol {
			t.Errorf("%v rstd: rel %.2e at %d", sh, e, i)
		}
	}
}

func TestRope(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(13, 14))
	for _, inter := range []bool{false, true} {
		for _, hd := range []int{2, 6, 64} {
			T, nh, pos0 := 11, 3, 5
			rp := nn.NewRope(hd, 10000, inter, nil)
			rp.Ensure(pos0 + T)
			var cs, sn []float32
			for p := 0; p < pos0+T; p++ {
				c, s := rp.Table(p)
				cs, sn = append(cs, c...), append(sn, s...)
			}
			bc, bs := upload(t, d, cs), upload(t, d, sn)
			for _, inv := range []bool{false, true} {
				x := randVec(r, T*nh*hd)
				want := append([]float32(nil), x...)
				if inv {
					rp.Backward(want, T, nh, pos0)
				} else {
					rp.Forward(want, T, nh, pos0)
				}
				bx := upload(t, d, x)
				if err := d.Rope(bx.All(), bc.All(), bs.All(), T, nh, hd, pos0, inter, inv); err != nil {
					t.Fatal(err)
				}
				got := download(t, bx)
				// scale: the pair's magnitude
				scale := func(i int) float64 {
					v := i % hd
					var a, b int
					if inter {
						a, b = i-v+v&^1, i-v+v|1
					} else {
						h := hd / 2
						a, b = i-v+v%h, i-v+v%h+h
					}
					return math.Abs(float64(x[a])) + math.Abs(float64(x[b]))
				}
				if e, i := relErr(got, want, scale); e > tol {
					t.Errorf("interleaved=%v hd=%d inverse=%v: %.2e at %d", inter, hd, inv, e, i)
				}
			}
		}
	}
	x := upload(t, d, make([]float32, 12))
	if err := d.Rope(x.All(), x.All(), x.All(), 2, 2, 3, 0, false, false); err == nil {
		t.Error("odd head dim: no error")
	}
}

func TestSoftmaxRows(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(15, 16))
	for _, sh := range [][2]int{{1, 1}, {7, 33}, {3, 517}, {2, 5003}} {
		rows, cols := sh[0], sh[1]
		x := randVec(r, rows*cols)
		for i := range x {
			x[i] *= 4
		}
		sm, lsm := make([]float32, rows*cols), make([]float32, rows*cols)
		for rr := 0; rr < rows; rr++ {
			row := x[rr*cols : (rr+1)*cols]
			lse := nn.LogSumExp(row)
			for i, v := range row {
				lsm[rr*cols+i] = float32(float64(v) - lse)
				sm[rr*cols+i] = float32(math.Exp(float64(v) - lse))
			}
		}
		bx := upload(t, d, x)
		by := upload(t, d, make([]float32, rows*cols))
		if err := d.Softmax(by.All(), bx.All(), rows, cols); err != nil {
			t.Fatal(err)
		}
		if e, i := relErr(download(t, by), sm, absOf(sm)); e > tol {
			t.Errorf("softmax %v: %.2e at %d", sh, e, i)
		}
		if err := d.LogSoftmax(bx.All(), bx.All(), rows, cols); err != nil { // in place
			t.Fatal(err)
		}
		// log-probabilities: absolute error relative to max(1, |v|)
		if e, i := relErr(download(t, bx), lsm, func(i int) float64 { return math.Max(1, math.Abs(float64(lsm[i]))) }); e > tol {
			t.Errorf("log-softmax %v: %.2e at %d", sh, e, i)
		}
	}
}

func TestSiLUMul(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(17, 18))
	n := 1001
	g, u := randVec(r, n), randVec(r, n)
	want := make([]float32, n)
	nn.SwiGLUForward(want, g, u)
	bg, bu := upload(t, d, g), upload(t, d, u)
	if err := d.SiLUMul(bg.All(), bg.All(), bu.All(), n); err != nil { // out aliases gate
		t.Fatal(err)
	}
	if e, i := relErr(download(t, bg), want, absOf(want)); e > tol {
		t.Errorf("silu·mul: %.2e at %d", e, i)
	}
}

func TestAdamW(t *testing.T) {
	d := open(t, Options{MaxBindBytes: 1024}) // split into windows too
	r := rand.New(rand.NewPCG(19, 20))
	n := 1337
	w0 := randVec(r, n)
	opt := train.NewAdamW(0.9, 0.999, 1e-8, 0.01)
	params := []train.Tensor[float32]{{Name: "w", Data: append([]float32(nil), w0...)}}
	bw, bm, bv := upload(t, d, w0), upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n))
	const lr = 1e-3
	var lastG []float32
	for step := 1; step <= 3; step++ {
		g := randVec(r, n)
		lastG = g
		opt.Step(params, []train.Tensor[float32]{{Name: "w", Data: g}}, lr)
		bg := upload(t, d, g)
		if err := d.AdamW(bw.All(), bg.All(), bm.All(), bv.All(), n, AdamWParams{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, LR: lr, WeightDecay: 0.01, Step: step}); err != nil {
			t.Fatal(err)
		}
	}
	want := params[0].Data
	if e, i := relErr(download(t, bw), want, func(i int) float64 { return math.Abs(float64(want[i])) + lr }); e > tol {
		t.Errorf("adamw weights: %.2e at %d", e, i)
	}
	st := opt.State(params)
	for k, b := range []*Buffer{bm, bv} {
		ref := st[k].Data
		// the moments are float32 sums of two terms: scale by their magnitude
		sc := func(i int) float64 { return math.Abs(float64(ref[i])) + math.Abs(float64(lastG[i])) }
		if k == 1 {
			sc = func(i int) float64 { return math.Abs(float64(ref[i])) + 1e-3*float64(lastG[i]*lastG[i]) }
		}
		if e, i := relErr(download(t, b), ref, sc); e > tol {
			t.Errorf("adamw %s: %.2e at %d", st[k].Name, e, i)
		}
	}
}

func TestCrossEntropy(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(21, 22))
	vocab := 517
	seqs := [][]int{{1, 5, 516, 0, 7}, {3, 3}, {9}}
	var tg []int32
	for _, s := range seqs {
		for i := range s {
			if i+1 < len(s) {
				tg = append(tg, int32(s[i+1]))
			} else {
				tg = append(tg, -1)
			}
		}
	}
	rows := len(tg)
	z := randVec(r, rows*vocab)
	dz0 := randVec(r, rows*vocab)
	want := append([]float32(nil), dz0...)
	const weight = 0.7
	loss := train.CrossEntropy(want, z, seqs, vocab, weight)
	npos := train.Positions(seqs)
	bz, bdz, bl := upload(t, d, z), upload(t, d, dz0), upload(t, d, make([]float32, rows))
	bt, err := d.Alloc(I32, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer bt.Free()
	if err := bt.UploadInt32(0, tg); err != nil {
		t.Fatal(err)
	}
	if err := d.CrossEntropy(bl.All(), bdz.All(), bz.All(), bt.All(), rows, vocab, float32(weight/float64(npos))); err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, l := range download(t, bl) {
		sum += float64(l)
	}
	if got := sum / float64(npos); math.Abs(got-loss) > tol*loss {
		t.Errorf("loss %v, want %v", got, loss)
	}
	// gradient: absolute error relative to the scale of one probability term
	sc := weight / float64(npos)
	if e, i := relErr(download(t, bdz), want, func(i int) float64 { return math.Abs(float64(dz0[i])) + sc }); e > tol {
		t.Errorf("dlogits: %.2e at %d", e, i)
	}
}

// TestBatching checks that a chain of operations is one submit.
func TestBatching(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(23, 24))
	x, w := upload(t, d, randVec(r, 64*32)), upload(t, d, randVec(r, 32*32))
	y := upload(t, d, make([]float32, 64*32))
	before := d.Submits()
	for i := 0; i < 10; i++ {
		if err := d.Gemm(false, true, y.All(), x.All(), w.All(), 64, 32, 32, false); err != nil {
			t.Fatal(err)
		}
		if err := d.RMSNorm(x.All(), View{}, y.All(), w.Slice(0, 32), 64, 32, 1e-5); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := d.Submits() - before; n != 1 {
		t.Errorf("20 dispatches took %d submits", n)
	}
}

// attnRef is causal GQA attention in float64; scale[i] bounds the rounding
// of out[i] (Σ p·|v|).
func attnRef(q, k, v []float32, kvmap []int, T, S, H, KVH, D, pos0 int, sc float64) (out, prob, scale []float64) {
	out, prob, scale = make([]float64, T*H*D), make([]float64, T*H*S), make([]float64, T*H*D)
	for t := 0; t < T; t++ {
		for h := 0; h < H; h++ {
			kh, last := kvmap[h], pos0+t
			sc64 := make([]float64, last+1)
			mx := math.Inf(-1)
			for s := 0; s <= last; s++ {
				var dot float64
				for d := 0; d < D; d++ {
					dot += float64(q[(t*H+h)*D+d]) * float64(k[(s*KVH+kh)*D+d])
				}
				sc64[s] = dot * sc
				mx = math.Max(mx, sc64[s])
			}
			var sum float64
			for s := range sc64 {
				sc64[s] = math.Exp(sc64[s] - mx)
				sum += sc64[s]
			}
			for s := range sc64 {
				p := sc64[s] / sum
				prob[(t*H+h)*S+s] = p
				for d := 0; d < D; d++ {
					vv := float64(v[(s*KVH+kh)*D+d])
					out[(t*H+h)*D+d] += p * vv
					scale[(t*H+h)*D+d] += p * math.Abs(vv)
				}
			}
		}
	}
	return
}

func TestAttention(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(25, 26))
	for _, c := range []struct {
		T, S, H, KVH, D, pos0 int
		kvmap                 []int
	}{
		{7, 7, 4, 2, 5, 0, nil},                // standard grouping, odd head dim
		{3, 10, 4, 2, 5, 7, []int{1, 0, 0, 1}}, // a pruned model's map, with a K/V prefix
		{9, 9, 3, 3, 16, 0, nil},               // MHA
		{2, 300, 2, 1, 8, 298, nil},            // S > 256 threads
	} {
		q, k, v := randVec(r, c.T*c.H*c.D), randVec(r, c.S*c.KVH*c.D), randVec(r, c.S*c.KVH*c.D)
		kvmap := c.kvmap
		if kvmap == nil {
			kvmap = make([]int, c.H)
			for h := range kvmap {
				kvmap[h] = h / (c.H / c.KVH)
			}
		}
		sc := 1 / math.Sqrt(float64(c.D))
		want, wp, scale := attnRef(q, k, v, kvmap, c.T, c.S, c.H, c.KVH, c.D, c.pos0, sc)
		bq, bk, bv := upload(t, d, q), upload(t, d, k), upload(t, d, v)
		bp, bo := upload(t, d, make([]float32, c.T*c.H*c.S)), upload(t, d, make([]float32, c.T*c.H*c.D))
		if err := d.Attention(bo.All(), bp.All(), bq.All(), bk.All(), bv.All(), c.kvmap, c.T, c.S, c.H, c.KVH, c.D, c.pos0, float32(sc)); err != nil {
			t.Fatal(err)
		}
		got, gp := download(t, bo), download(t, bp)
		w32, p32 := make([]float32, len(want)), make([]float32, len(wp))
		for i := range want {
			w32[i] = float32(want[i])
		}
		for i := range wp {
			p32[i] = float32(wp[i])
		}
		if e, i := relErr(got, w32, func(i int) float64 { return scale[i] }); e > tol {
			t.Errorf("%+v out: %.2e at %d", c, e, i)
		}
		// probabilities: relative, and exactly zero past the causal limit
		if e, i := relErr(gp, p32, func(i int) float64 { return math.Max(float64(p32[i]), 1e-30) }); e > tol {
			t.Errorf("%+v probs: %.2e at %d", c, e, i)
		}
	}
	x := upload(t, d, make([]float32, 64))
	if err := d.Attention(x.All(), x.All(), x.All(), x.All(), x.All(), []int{0, 2}, 1, 1, 2, 2, 1, 0, 1); err == nil {
		t.Error("kvmap out of range: no error")
	}
}

func TestEmbed(t *testing.T) {
	d := open(t, Options{})
	r := rand.New(rand.NewPCG(27, 28))
	vocab, dim := 37, 13
	tab := randVec(r, vocab*dim)
	ids := []int{5, 0, 36, 5, 17}
	bt, bo := upload(t, d, tab), upload(t, d, make([]float32, len(ids)*dim))
	if err := d.Embed(bo.All(), bt.All(), ids, vocab, dim); err != nil {
		t.Fatal(err)
	}
	got := download(t, bo)
	for i, id := range ids {
		for c := 0; c < dim; c++ {
			if got[i*dim+c] != tab[id*dim+c] {
				t.Fatalf("row %d col %d: %v, want %v", i, c, got[i*dim+c], tab[id*dim+c])
			}
		}
	}
	if err := d.Embed(bo.All(), bt.All(), []int{3, 37}, vocab, dim); err == nil || !strings.Contains(err.Error(), "position 1") {
		t.Errorf("id out of range: %v", err)
	}
}

func TestBackwardOps(t *testing.T) {
	for _, lim := range []int{0, 1024} { // 1 KiB: row chunks accumulate dw in order
		d := open(t, Options{MaxBindBytes: lim})
		r := rand.New(rand.NewPCG(29, 30))
		rows, dim := 19, 37
		x, w, dy := randVec(r, rows*dim), randVec(r, dim), randVec(r, rows*dim)
		rs := make([]float32, rows)
		nn.RMSNormForward(make([]float32, rows*dim), rs, x, w, rows, dim, 1e-5)
		dx0, dw0 := randVec(r, rows*dim), randVec(r, dim)
		wdx, wdw := append([]float32(nil), dx0...), append([]float32(nil), dw0...)
		nn.RMSNormBackward(wdx, wdw, dy, x, w, rs, rows, dim)
		bdx, bdw := upload(t, d, dx0), upload(t, d, dw0)
		if err := d.RMSNormBackward(bdx.All(), bdw.All(), upload(t, d, dy).All(), upload(t, d, x).All(), upload(t, d, w).All(), upload(t, d, rs).All(), rows, dim); err != nil {
			t.Fatal(err)
		}
		// scales: the magnitudes of the summed terms
		sdx := func(i int) float64 {
			rr := i / dim
			var c float64
			for j := 0; j < dim; j++ {
				c += math.Abs(float64(dy[rr*dim+j] * w[j] * x[rr*dim+j]))
			}
			s := float64(rs[rr])
			return math.Abs(float64(dx0[i])) + s*math.Abs(float64(w[i%dim]*dy[i])) + s*s*s*c/float64(dim)*math.Abs(float64(x[i]))
		}
		sdw := func(i int) float64 {
			v := math.Abs(float64(dw0[i]))
			for rr := 0; rr < rows; rr++ {
				v += math.Abs(float64(dy[rr*dim+i]*x[rr*dim+i])) * float64(rs[rr])
			}
			return v
		}
		if e, i := relErr(download(t, bdx), wdx, sdx); e > tol {
			t.Errorf("limit %d: rmsnorm dx %.2e at %d", lim, e, i)
		}
		if e, i := relErr(download(t, bdw), wdw, sdw); e > tol {
			t.Errorf("limit %d: rmsnorm dw %.2e at %d", lim, e, i)
		}

		n := 1001
		g, u, dout := randVec(r, n), randVec(r, n), randVec(r, n)
		wg, wu := make([]float32, n), make([]float32, n)
		nn.SwiGLUBackward(wg, wu, dout, g, u)
		bg, bu := upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n))
		if err := d.SwiGLUBackward(bg.All(), bu.All(), upload(t, d, dout).All(), upload(t, d, g).All(), upload(t, d, u).All(), n); err != nil {
			t.Fatal(err)
		}
		if e, i := relErr(download(t, bg), wg, absOf(wg)); e > tol {
			// dgate = dy·u·σ·(1 + g(1−σ)): the bracket can cancel; scale by its terms
			sc := func(i int) float64 {
				gg := float64(g[i])
				sg := 1 / (1 + math.Exp(-gg))
				return math.Abs(float64(dout[i]*u[i])) * sg * (1 + math.Abs(gg*(1-sg)))
			}
			if e2, i2 := relErr(download(t, bg), wg, sc); e2 > tol {
				t.Errorf("limit %d: swiglu dgate %.2e at %d (plain rel %.2e at %d)", lim, e2, i2, e, i)
			}
		}
		if e, i := relErr(download(t, bu), wu, absOf(wu)); e > tol {
			t.Errorf("limit %d: swiglu dup %.2e at %d", lim, e, i)
		}

		vocab := 11
		ids := []int{3, 0, 3, 10, 3, 7}
		dxe := randVec(r, len(ids)*dim)
		de0 := randVec(r, vocab*dim)
		wde := append([]float32(nil), de0...)
		nn.EmbeddingBackward(wde, dxe, ids, dim)
		bde := upload(t, d, de0)
		// at 1 KiB the table (407 floats) is split into row ranges
		if err := d.EmbedBackward(bde.All(), upload(t, d, dxe).All(), ids, vocab, dim); err != nil {
			t.Fatal(err)
		}
		// same additions in the same order: exact
		got := download(t, bde)
		for i := range got {
			if got[i] != wde[i] {
				t.Fatalf("limit %d: embedding gradient differs at %d: %v vs %v", lim, i, got[i], wde[i])
			}
		}
	}
}
