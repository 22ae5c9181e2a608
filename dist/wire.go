package dist

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"io"

	"github.com/darwinlm/darwinlm-go/model"
)

// The dense model travels as a gob of its in-memory form (not a Hugging
// Face folder: saving a llama2.c model permutes its RoPE rows, and the
// worker must hold exactly the coordinator's weights, which
// prune.Database.CheckModel verifies by hash).
type wireModel struct {
	Cfg    model.Config
	Embed  []float32
	Layers []model.Layer
	Norm   []float32
	LMHead []float32 // nil when tied
}

func writeModel(w io.Writer, m *model.Model) error {
	wm := wireModel{Cfg: m.Cfg, Embed: m.Embed, Layers: m.Layers, Norm: m.Norm, LMHead: m.LMHead}
	if m.Cfg.Tied {
		wm.LMHead = nil
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := gob.NewEncoder(bw).Encode(&wm); err != nil {
		return err
	}
	return bw.Flush()
}

func readModel(r io.Reader, name string) (*model.Model, error) {
	var wm wireModel
	if err := gob.NewDecoder(bufio.NewReaderSize(r, 1<<20)).Decode(&wm); err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	m := &model.Model{Cfg: wm.Cfg, Embed: wm.Embed, Layers: wm.Layers, Norm: wm.Norm, LMHead: wm.LMHead}
	if m.Cfg.Tied {
		m.LMHead = m.Embed
	}
	if err := m.Validate("model " + name); err != nil {
		return nil, err
	}
	return m, nil
}
