package prune

import (
	"math"
	"sort"
	"testing"

	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
)

func heldOutPPL(t testing.TB, r *refSetup, m *model.Model) float64 {
	t.Helper()
	res, err := eval.PerplexityIDs(m, cpu(t), m.Cfg.Vocab, r.heldOut, refSeqLen, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.PPL
}

// Level 0 stitches to exactly the dense model; perplexity and every
// module's error grow with the uniform level; parameter counts match.
func TestUniformLevelsRealModels(t *testing.T) {
	for _, rm := range refModels {
		t.Run(rm.key, func(t *testing.T) {
			r := refDB(t, rm.key)
			be := cpu(t)
			seqs := [][]int{r.heldOut[:refSeqLen], r.heldOut[refSeqLen : 2*refSeqLen]}
			dense := r.m.Forward(be, seqs)
			prev := 0.0
			for lv := 0; lv < r.db.Man.NumLevels; lv++ {
				cfg := Uniform(r.db, lv)
				sm, err := r.db.Stitch(r.m, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if p, _ := r.db.Params(cfg); p != sm.NumParams() {
					t.Errorf("level %d: manifest %d parameters, stitched model %d", lv, p, sm.NumParams())
				}
				if lv == 0 {
					out := sm.Forward(be, seqs)
					for i := range out {
						if out[i] != dense[i] {
							t.Fatalf("level 0 logits differ from the dense model at %d", i)
						}
					}
				}
				ppl := heldOutPPL(t, r, sm)
				t.Logf("uniform level %2d: %7d params, held-out ppl %.3f", lv, sm.NumParams(), ppl)
				if ppl < prev {
					t.Errorf("level %d: ppl %.4f below level %d's %.4f", lv, ppl, lv-1, prev)
				}
				prev = ppl
			}
			for ci := 0; ci < r.db.NumModules(); ci++ {
				lv := r.db.Module(ci).Levels
				for l := 1; l < len(lv); l++ {
					if lv[l].Error < lv[l-1].Error {
						t.Errorf("%s: error decreases at level %d", r.db.Module(ci).Name, l)
					}
				}
			}
		})
	}
}

// layerGrams collects, in float64, XᵀX of the o_proj and down_proj inputs
// of every layer of the dense model over the calibration windows.
type layerGrams struct{ g [][2][]float64 }

func (s *layerGrams) Activation(layer int, kind model.ActKind, x []float32, rows, cols int) {
	k := 0
	if kind == model.DownProjInput {
		k = 1
	}
	g := s.g[layer][k]
	row := make([]float64, cols)
	for r := 0; r < rows; r++ {
		for c := range row {
			row[c] = float64(x[r*cols+c])
		}
		for i, xi := range row {
			if xi == 0 {
				continue
			}
			gi := g[i*cols : (i+1)*cols]
			for j, xj := range row {
				gi[j] += xi * xj
			}
		}
	}
}

// reconErr is ‖(W − W′)X‖² = tr((W−W′) XᵀX (W−W′)ᵀ) with W′ = w2 placed at
// the kept columns (zero elsewhere).
func reconErr(w []float32, rows, cols int, g []float64, w2 []float32, keptCols []int) float64 {
	d := make([]float64, rows*cols)
	for i, v := range w {
		d[i] = float64(v)
	}
	k := len(keptCols)
	for r := 0; r < rows; r++ {
		for a, c := range keptCols {
			d[r*cols+c] -= float64(w2[r*k+a])
		}
	}
	e := 0.0
	for r := 0; r < rows; r++ {
		dr := d[r*cols : (r+1)*cols]
		for i, di := range dr {
			if di == 0 {
				continue
			}
			e += di * nn.DotT(g[i*cols:(i+1)*cols], dr)
		}
	}
	return e
}

// At every level, the OBS-updated weights reconstruct the layer output on
// the calibration data better than the same removal without the update.
func TestOBSBeatsPlainRemoval(t *testing.T) {
	for _, rm := range refModels {
		t.Run(rm.key, func(t *testing.T) {
			r := refDB(t, rm.key)
			c := r.m.Cfg
			sink := &layerGrams{}
			for _, l := range r.m.Layers {
				sink.g = append(sink.g, [2][]float64{make([]float64, l.Heads*l.Heads*c.HeadDim*c.HeadDim), make([]float64, l.Inter*l.Inter)})
			}
			r.m.HiddenSink(cpu(t), r.calib, sink)
			for ci := 0; ci < r.db.NumModules(); ci++ {
				mod := r.db.Module(ci)
				l := &r.m.Layers[mod.Layer]
				w, cols, group, k := l.Wdown, l.Inter, 1, 1
				if mod.Unit == "head" {
					w, cols, group, k = l.Wo, l.Heads*c.HeadDim, c.HeadDim, 0
				}
				for lv := 1; lv < len(mod.Levels)-1; lv++ {
					w2, kept, err := r.db.LevelWeight(ci, lv)
					if err != nil {
						t.Fatal(err)
					}
					kc := expand(kept, group)
					obs := reconErr(w, c.Hidden, cols, sink.g[mod.Layer][k], w2, kc)
					plain := reconErr(w, c.Hidden, cols, sink.g[mod.Layer][k], gatherCols(w, c.Hidden, cols, kc), kc)
					if !(obs < plain) {
						t.Errorf("%s level %d: OBS error %.6g not below plain removal %.6g", mod.Name, lv, obs, plain)
					}
				}
			}
		})
	}
}

// Uniform one-shot pruning at about half of the prunable parameters: the
// OBS database gives a lower held-out perplexity than removing the units of
// smallest weight magnitude without any update.
func TestUniformHalfOBSBeatsMagnitude(t *testing.T) {
	for _, rm := range refModels {
		t.Run(rm.key, func(t *testing.T) {
			r := refDB(t, rm.key)
			c := r.m.Cfg
			lv := 5
			cfg := Uniform(r.db, lv)
			obsModel, err := r.db.Stitch(r.m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			mag := r.m.Derive()
			for i := range r.m.Layers {
				l := &r.m.Layers[i]
				nh := r.db.Man.Modules[2*i].Levels[lv].Removed
				nn := r.db.Man.Modules[2*i+1].Levels[lv].Removed
				heads := smallestGroups(l.Wo, c.Hidden, l.Heads, c.HeadDim, nh)
				neurons := smallestGroups(l.Wdown, c.Hidden, l.Inter, 1, nn)
				ly, err := model.SliceLayer(c, l, heads, nil, neurons, nil)
				if err != nil {
					t.Fatal(err)
				}
				mag.Layers[i] = ly
			}
			p, _ := r.db.Params(cfg)
			frac := 1 - float64(r.db.PrunableParams()-(p-(r.db.Man.TotalParams-r.db.PrunableParams())))/float64(r.db.PrunableParams())
			pObs, pMag := heldOutPPL(t, r, obsModel), heldOutPPL(t, r, mag)
			t.Logf("uniform level %d (%.0f%% of prunable parameters kept): OBS ppl %.3f, magnitude without update %.3f, dense %.3f",
				lv, 100*frac, pObs, pMag, heldOutPPL(t, r, r.m))
			// The same units are removed per module; with GQA the magnitude
			// choice may leave a K/V head without query heads (dropped), so
			// the sizes can differ slightly.
			if d := math.Abs(float64(mag.NumParams()-obsModel.NumParams())) / float64(obsModel.NumParams()); d > 0.05 {
				t.Errorf("sizes differ by %.1f%%: %d vs %d", 100*d, mag.NumParams(), obsModel.NumParams())
			}
			if !(pObs < pMag) {
				t.Errorf("OBS ppl %.4f not below magnitude %.4f", pObs, pMag)
			}
		})
	}
}

// smallestGroups keeps all but the `remove` column groups of w [rows × n·g]
// with the smallest squared norm; it returns the kept groups, ascending.
func smallestGroups(w []float32, rows, n, g, remove int) []int {
	norm := make([]float64, n)
	for r := 0; r < rows; r++ {
		for c := 0; c < n*g; c++ {
			v := float64(w[r*n*g+c])
			norm[c/g] += v * v
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return norm[idx[a]] < norm[idx[b]] })
	keep := append([]int{}, idx[remove:]...)
	sort.Ints(keep)
	return keep
}

// gatherCols returns the columns of m [rows × width] listed in cols.
func gatherCols(m []float32, rows, width int, cols []int) []float32 {
	out := make([]float32, rows*len(cols))
	for r := 0; r < rows; r++ {
		for a, c := range cols {
			out[r*len(cols)+a] = m[r*width+c]
		}
	}
	return out
}
