package prune

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/model"
)

// Stitch builds the pruned model of cfg from the dense model the database
// was built from (check it once with CheckModel; Stitch only checks shapes):
// every module takes its level's compensated o_proj / down_proj, and the
// q/k/v and gate/up rows of removed heads and neurons are dropped, so the
// model is physically smaller. Layers at level 0 in both modules are the
// dense ones; every tensor that does not change is aliased, so the result
// must not be written into (Clone it first to train it). Level weights are
// read once and cached by the database.
func (db *Database) Stitch(dense *model.Model, cfg LevelConfig) (*model.Model, error) {
	return db.stitch(dense, cfg, false)
}

// StitchZeroed is Stitch with the original shapes: removed columns of
// o_proj and down_proj are zero (the reference's simulation of removal),
// every other tensor is the dense one. It computes the same function as
// Stitch at the dense cost, for tools that cannot vary widths per layer.
func (db *Database) StitchZeroed(dense *model.Model, cfg LevelConfig) (*model.Model, error) {
	return db.stitch(dense, cfg, true)
}

func (db *Database) stitch(dense *model.Model, cfg LevelConfig, zeroed bool) (*model.Model, error) {
	levels, err := db.Check(cfg)
	if err != nil {
		return nil, err
	}
	if err := db.checkShapes(dense); err != nil {
		return nil, err
	}
	L := db.Man.Arch.Layers
	out := dense.Derive()
	for i := 0; i < L; i++ {
		la, lm := levels[L+i], levels[i]
		if la == 0 && lm == 0 {
			continue
		}
		wo, heads, err := db.LevelWeight(L+i, la)
		if err != nil {
			return nil, err
		}
		wd, neurons, err := db.LevelWeight(i, lm)
		if err != nil {
			return nil, err
		}
		src := &dense.Layers[i]
		var ly model.Layer
		if zeroed {
			ly = *src
			d := dense.Cfg.HeadDim
			if la > 0 {
				ly.Wo = scatterColumns(wo, dense.Cfg.Hidden, src.Heads*d, expand(heads, d))
				if len(heads) == 0 && ly.Bo != nil { // a removed module adds nothing, bias included
					ly.Bo = make([]float32, len(ly.Bo))
				}
			}
			if lm > 0 {
				ly.Wdown = scatterColumns(wd, dense.Cfg.Hidden, src.Inter, neurons)
				if len(neurons) == 0 && ly.Bdown != nil {
					ly.Bdown = make([]float32, len(ly.Bdown))
				}
			}
		} else {
			// At level 0 the kept lists are complete and the weights nil, so
			// SliceLayer aliases the dense sublayer.
			ly, err = model.SliceLayer(dense.Cfg, src, heads, wo, neurons, wd)
			if err != nil {
				return nil, fmt.Errorf("stitch layer %d: %w", i, err)
			}
		}
		out.Layers[i] = ly
	}
	return out, nil
}

// checkShapes checks that the dense model has the database's widths.
func (db *Database) checkShapes(m *model.Model) error {
	a := db.Man.Arch
	if len(m.Layers) != a.Layers || m.Cfg.Hidden != a.Hidden || m.Cfg.HeadDim != a.HeadDim {
		return fmt.Errorf("stitch: the model (%d layers, hidden %d) is not the database's (%d layers, hidden %d)", len(m.Layers), m.Cfg.Hidden, a.Layers, a.Hidden)
	}
	for i := range m.Layers {
		if m.Layers[i].Heads != db.Man.Modules[2*i].Units || m.Layers[i].Inter != db.Man.Modules[2*i+1].Units {
			return fmt.Errorf("stitch: layer %d of the model has %d heads and %d neurons, the database %d and %d (stitch from the dense model)",
				i, m.Layers[i].Heads, m.Layers[i].Inter, db.Man.Modules[2*i].Units, db.Man.Modules[2*i+1].Units)
		}
	}
	return nil
}

// expand turns unit indices into column indices (d columns per unit).
func expand(units []int, d int) []int {
	out := make([]int, 0, len(units)*d)
	for _, u := range units {
		for j := 0; j < d; j++ {
			out = append(out, u*d+j)
		}
	}
	return out
}

// scatterColumns places w [rows × len(cols)] into a zero [rows × width]
// matrix at the given columns.
func scatterColumns(w []float32, rows, width int, cols []int) []float32 {
	out := make([]float32, rows*width)
	k := len(cols)
	for r := 0; r < rows; r++ {
		for a, c := range cols {
			out[r*width+c] = w[r*k+a]
		}
	}
	return out
}
