package model_test

import (
	"math"
	"runtime"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

// The forward pass is bitwise deterministic: from run to run, for any number
// of kernel workers and goroutines, and across the AVX2 and AVX-512 variants
// (which are documented to give identical bits).
func TestForwardBitwiseDeterministic(t *testing.T) {
	m := randomModel(randCfg{Heads: 8, KV: 2, HD: 16, Hidden: 128, Inter: 200, Vocab: 300, Layers: 3, Bias: true}, true, 11)
	seqs := [][]int{make([]int, 130), make([]int, 7), make([]int, 64)}
	for i, s := range seqs {
		for j := range s {
			s[j] = (i*97 + j*31) % m.Cfg.Vocab
		}
	}
	ref := m.Forward(cpu.New().WithWorkers(1), seqs)
	check := func(name string, be backend.Backend, procs int) {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		got := m.Forward(be, seqs)
		for i := range ref {
			if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("%s, GOMAXPROCS=%d: logit %d is %v, want %v", name, procs, i, got[i], ref[i])
			}
		}
	}
	for _, procs := range []int{1, 2, 4} {
		for _, w := range []int{1, 2, 3} {
			check("default variant", cpu.New().WithWorkers(w), procs)
		}
		for _, v := range cpu.Available() {
			if v == "purego" {
				continue // the pure-Go twin rounds differently (no FMA); tested within tolerance elsewhere
			}
			be, err := cpu.NewVariant(v)
			if err != nil {
				t.Fatal(err)
			}
			check(v, be, procs)
		}
	}
	// The pure-Go backend is deterministic on its own terms too.
	pg, _ := cpu.NewVariant("purego")
	a, b := m.Forward(pg.WithWorkers(1), seqs), m.Forward(pg.WithWorkers(3), seqs)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("purego: logit %d differs between 1 and 3 workers", i)
		}
	}
}
