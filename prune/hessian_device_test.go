package prune

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/nn"
)

// hostHessianSink is the Hessian capture as it was before the device
// interface: each 512-row chunk's XᵀX by the backend's SyrkTN into a
// cleared float32 slice, summed into float64.
type hostHessianSink struct {
	be  backend.Backend
	acc [2][]float64
}

func (s *hostHessianSink) Activation(layer int, kind model.ActKind, x []float32, rows, cols int) {
	acc := s.acc[0]
	if kind == model.DownProjInput {
		acc = s.acc[1]
	}
	scratch := make([]float32, cols*cols)
	for r0 := 0; r0 < rows; r0 += 512 {
		r1 := min(rows, r0+512)
		clear(scratch)
		s.be.SyrkTN(scratch, x[r0*cols:r1*cols], cols, r1-r0)
		for i, v := range scratch {
			acc[i] += float64(v)
		}
	}
}

// On the CPU the device Hessian capture of Build gives bitwise the Hessians
// (and hidden states) of the host capture, over batches longer than one
// 512-row chunk and a ragged-GQA layer.
func TestHessianDeviceBitwise(t *testing.T) {
	be := cpu(t)
	m := modeltest.Random(modeltest.Cfg{Heads: 4, KV: 2, HD: 8, Hidden: 32, Inter: 40, Vocab: 60, Layers: 2, KeepHeads: []int{0, 2, 3}}, true, 5)
	c := m.Cfg
	r := rand.New(rand.NewPCG(1, 1))
	batches := [][]int{{300, 250, 17}, {40, 9}}
	dev := nn.DeviceFor(be)
	rd, err := m.Upload(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	ar := model.NewArena(dev)
	defer ar.Free()
	xs := make([][]float32, len(batches))
	for b, lens := range batches {
		var seqs [][]int
		for _, n := range lens {
			s := make([]int, n)
			for i := range s {
				s[i] = r.IntN(c.Vocab)
			}
			seqs = append(seqs, s)
		}
		xs[b] = m.EmbedSeqs(seqs)
	}
	for li := range m.Layers {
		l := &m.Layers[li]
		nq := l.Heads * c.HeadDim
		old := &hostHessianSink{be: be, acc: [2][]float64{make([]float64, nq*nq), make([]float64, l.Inter*l.Inter)}}
		var hs [2]*hessian
		for k, n := range []int{nq, l.Inter} {
			if hs[k], err = newHessian(dev, n); err != nil {
				t.Fatal(err)
			}
		}
		for b, lens := range batches {
			xOld := slices.Clone(xs[b])
			if err := m.RunLayer(be, li, xOld, lens, old); err != nil {
				t.Fatal(err)
			}
			if err := runLayer(dev, rd, ar, li, xs[b], lens, hessianSink{hs}); err != nil {
				t.Fatal(err)
			}
			for i := range xOld {
				if math.Float32bits(xOld[i]) != math.Float32bits(xs[b][i]) {
					t.Fatalf("layer %d batch %d: hidden state [%d] %v, host %v", li, b, i, xs[b][i], xOld[i])
				}
			}
		}
		for k := range hs {
			got := hs[k].finish(1)
			if len(got) == 0 {
				t.Fatalf("layer %d: empty Hessian %d", li, k)
			}
			// Not vacuous: the sinks saw the activations (XᵀX has a
			// positive trace).
			var tr float64
			for i, n := 0, []int{nq, l.Inter}[k]; i < n; i++ {
				tr += old.acc[k][i*n+i]
			}
			if !(tr > 0) {
				t.Fatalf("layer %d Hessian %d: trace %v, the sink saw no activations", li, k, tr)
			}
			for i := range got {
				if math.Float64bits(got[i]) != math.Float64bits(old.acc[k][i]) {
					t.Fatalf("layer %d Hessian %d [%d]: device %v, host %v", li, k, i, got[i], old.acc[k][i])
				}
			}
		}
	}
}
