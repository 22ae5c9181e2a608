package model_test

import (
	"math"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/nn"
)

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// The device code paths a GPU takes (weights uploaded, results downloaded,
// the KV cache grown by device copies, a host sink fed by downloads) give
// bitwise the host path's results on a device that copies (CopyDevice runs
// the host device's operations behind copies).
func TestCopyDeviceMatchesHost(t *testing.T) {
	be, _ := backend.Get("")
	cb := modeltest.CopyBackend{Backend: be}
	if _, ok := nn.DeviceFor(cb).(modeltest.CopyDevice); !ok {
		t.Fatal("nn.DeviceFor does not return the backend's device")
	}
	seqs := [][]int{{1, 2, 3, 4, 5, 6, 7}, {8, 9}, {10, 11, 12}}
	for ci, rc := range []randCfg{
		{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2, Bias: true, Tied: true},
		{Heads: 8, KV: 4, HD: 4, Hidden: 16, Inter: 12, Vocab: 20, Layers: 3, Bias: true, MLPBias: true, KeepHeads: []int{0, 1, 2, 5, 7}},
	} {
		m := randomModel(rc, true, uint64(ci+11))
		sameBits(t, "Forward", m.Forward(cb, seqs), m.Forward(be, seqs))

		// Shared-prefix segments (chains of views), empty ones included.
		segs := []model.Segment{{Tokens: []int{1, 2, 3}, Parent: -1}, {Tokens: []int{4, 5}, Parent: 0}, {Tokens: nil, Parent: 1}, {Tokens: []int{6}, Parent: 2}, {Tokens: []int{7, 8}, Parent: 0}}
		wx, wr, err := m.HiddenSegments(be, segs)
		if err != nil {
			t.Fatal(err)
		}
		gx, gr, err := m.HiddenSegments(cb, segs)
		if err != nil || gr != wr {
			t.Fatalf("HiddenSegments: %v, %d rows want %d", err, gr, wr)
		}
		sameBits(t, "HiddenSegments", gx, wx)

		// KV cache: several steps, so the device buffers grow.
		toks := []int{4, 8, 15, 16, 3, 12, 1, 2, 3, 5, 7, 9, 11}
		hc, dc := m.NewCache(), m.NewCache()
		for i := 0; i < len(toks); {
			n := min(1+i%3, len(toks)-i)
			sameBits(t, "Step", m.Step(cb, dc, toks[i:i+n]), m.Step(be, hc, toks[i:i+n]))
			i += n
		}

		// The host sink behind downloads, and RunLayer on a copy.
		var hs, ds capture
		want, _ := m.HiddenSink(be, seqs, &hs)
		got, _ := m.HiddenSink(cb, seqs, &ds)
		sameBits(t, "HiddenSink", got, want)
		if len(hs.x) < len(m.Layers) { // not vacuous: attention and MLP inputs of the kept modules
			t.Fatalf("the host sink got %d activations for %d layers", len(hs.x), len(m.Layers))
		}
		if len(hs.x) != len(ds.x) || !slices.Equal(hs.calls, ds.calls) {
			t.Fatalf("sink calls %v, want %v", ds.calls, hs.calls)
		}
		for i := range hs.x {
			sameBits(t, "sink activation", ds.x[i], hs.x[i])
		}
		lens := model.SeqLens(seqs)
		xh, xd := m.EmbedSeqs(seqs), m.EmbedSeqs(seqs)
		for li := range m.Layers {
			if err := m.RunLayer(be, li, xh, lens, nil); err != nil {
				t.Fatal(err)
			}
			if err := m.RunLayer(cb, li, xd, lens, nil); err != nil {
				t.Fatal(err)
			}
			sameBits(t, "RunLayer", xd, xh)
		}
		lg, err := must(m.Upload(nn.DeviceFor(cb))).Logits(want[:2*m.Cfg.Hidden], 2)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, "Logits", lg, m.Logits(be, want[:2*m.Cfg.Hidden], 2))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Bad token ids are an error of the device-taking API, not a panic.
func TestResidentBadTokens(t *testing.T) {
	be, _ := backend.Get("")
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2}, false, 1)
	for _, dev := range []backend.Device[float32]{nn.DeviceFor(be), modeltest.NewCopyDevice(be)} {
		r, err := m.Upload(dev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Forward([][]int{{1, 50}}); err == nil {
			t.Errorf("%s: token 50 of a 50-token vocabulary accepted", dev.Name())
		}
		if _, _, err := r.HiddenSegments([]model.Segment{{Tokens: []int{-1}, Parent: -1}}); err == nil {
			t.Errorf("%s: token -1 accepted", dev.Name())
		}
		c := m.NewCache()
		if _, err := r.Step(c, []int{3, 99}); err == nil || c.Len != 0 {
			t.Errorf("%s: bad step accepted (err %v, cache length %d)", dev.Name(), err, c.Len)
		}
		// The device is usable again after the error.
		z, err := r.Forward([][]int{{1, 2}})
		if err != nil || len(z) != 2*m.Cfg.Vocab {
			t.Errorf("%s: forward after an error: %v", dev.Name(), err)
		}
		r.Release()
	}
}

// An arena reuses its buffers after Reset and grows a slot only when a
// larger buffer is asked for.
func TestArenaReuse(t *testing.T) {
	be, _ := backend.Get("")
	dev := nn.NewHost[float32](be)
	ar := model.NewArena[float32](dev)
	a, b := ar.Take(10), ar.Take(20)
	ha, _ := dev.Host(a)
	ha[0] = 7
	mk := ar.Mark()
	c := ar.Take(5)
	ar.Release(mk)
	if c2 := ar.Take(3); c2.Buf != c.Buf {
		t.Error("Release did not return the buffer to its slot")
	}
	ar.Reset()
	a2, b2 := ar.Take(8), ar.Take(30)
	if a2.Buf != a.Buf || a2.N != 8 {
		t.Errorf("slot 0 not reused: %+v vs %+v", a2, a)
	}
	if h, _ := dev.Host(a2); h[0] != 7 {
		t.Error("a reused buffer was cleared (the arena must not clear)")
	}
	if b2.Buf == b.Buf || b2.N != 30 {
		t.Error("slot 1 was not regrown for a larger buffer")
	}
	if err := ar.Err(); err != nil {
		t.Fatal(err)
	}
	ar.Free()
}

// A released KV cache starts over: the same steps give the same logits,
// on the host and on a copying device (whose freed buffers would fail).
func TestKVCacheRelease(t *testing.T) {
	be, _ := backend.Get("")
	m := randomModel(randCfg{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 48, Vocab: 50, Layers: 2}, false, 4)
	for _, b := range []backend.Backend{be, modeltest.CopyBackend{Backend: be}} {
		c := m.NewCache()
		first := slices.Clone(m.Step(b, c, []int{1, 2, 3}))
		m.Step(b, c, []int{4})
		c.Release()
		if c.Len != 0 {
			t.Fatalf("length %d after Release", c.Len)
		}
		sameBits(t, "after Release", m.Step(b, c, []int{1, 2, 3}), first)
		c.Release()
	}
}
