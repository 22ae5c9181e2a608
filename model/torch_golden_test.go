package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/hub"
)

// TestRealCheckpointsMatchTorch compares model.Forward on the two tiny real
// checkpoints with an independent float64 PyTorch implementation
// (testdata/gen/torch_ref.py, output committed in testdata/golden).
func TestRealCheckpointsMatchTorch(t *testing.T) {
	if hub.Mirror() == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	raw, err := os.ReadFile(filepath.Join(hub.ModuleRoot(), "testdata/golden/torch_logits.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string]json.RawMessage
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	be, _ := backend.Get("")
	for _, spec := range []string{"hf:raincandy-u/TinyStories-656K", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"} {
		t.Run(spec, func(t *testing.T) {
			var g struct {
				Tokens    []int       `json:"tokens"`
				First64   [][]float64 `json:"first64"`
				LogSumExp []float64   `json:"logsumexp"`
				Argmax    []int       `json:"argmax"`
			}
			if err := json.Unmarshal(golden[spec], &g); err != nil {
				t.Fatal(err)
			}
			tokPath := ""
			if filepath.Ext(spec) == ".bin" {
				tokPath = filepath.Join(hub.Mirror(), "models/karpathy/tinyllamas/stories260K/tok512.bin")
			}
			m, _, err := Open(spec, tokPath)
			if err != nil {
				t.Fatal(err)
			}
			V := m.Cfg.Vocab
			logits := m.Forward(be, [][]int{g.Tokens})
			for p := range g.Tokens {
				row := logits[p*V : (p+1)*V]
				for v, want := range g.First64[p] {
					if d := math.Abs(float64(row[v]) - want); d > 1e-4*(1+math.Abs(want)) {
						t.Fatalf("pos %d vocab %d: go %.7g torch %.7g", p, v, row[v], want)
					}
				}
				best := 0
				for v := range row {
					if row[v] > row[best] {
						best = v
					}
				}
				if best != g.Argmax[p] {
					t.Errorf("pos %d: argmax go %d torch %d", p, best, g.Argmax[p])
				}
				mx, s := math.Inf(-1), 0.0
				for _, x := range row {
					mx = math.Max(mx, float64(x))
				}
				for _, x := range row {
					s += math.Exp(float64(x) - mx)
				}
				if lse := mx + math.Log(s); math.Abs(lse-g.LogSumExp[p]) > 1e-4*(1+math.Abs(lse)) {
					t.Errorf("pos %d: logsumexp go %.7g torch %.7g", p, lse, g.LogSumExp[p])
				}
			}
		})
	}
}
