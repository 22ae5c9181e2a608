package prune

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// The two tiny real models and the calibration of the reference tests:
// the first refCalibTokens tokens of the mirror's TinyStories text (sampler
// first) in windows of refSeqLen.
var refModels = []struct{ key, spec string }{
	{"656k", "hf:raincandy-u/TinyStories-656K"},
	{"260k", "hf:karpathy/tinyllamas/stories260K/stories260K.bin"},
}

const (
	refCalibTokens = 16384
	refSeqLen      = 256
	tinyStories    = "hf-dataset:roneneldan/TinyStories/default/validation_prefix"
)

func needMirror(t testing.TB) {
	t.Helper()
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
}

func openModel(t testing.TB, spec string) (*model.Model, tokenizer.Tokenizer) {
	t.Helper()
	m, tok, err := model.Open(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

// refCalib returns the calibration windows of a reference model and checks
// them against the committed token file the PyTorch generator reads
// (PRUNE_WRITE_CALIB=1 rewrites the file).
func refCalib(t testing.TB, key string, tok tokenizer.Tokenizer) [][]int {
	t.Helper()
	docs, err := data.ReadTexts(tinyStories)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := SampleSequences(docs, tok, refCalibTokens, refSeqLen, "first", 0)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "calib_"+key+".u16")
	if os.Getenv("PRUNE_WRITE_CALIB") == "1" {
		var b []byte
		for _, s := range seqs {
			for _, id := range s {
				b = binary.LittleEndian.AppendUint16(b, uint16(id))
			}
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2*refCalibTokens {
		t.Fatalf("%s: %d bytes, want %d", path, len(b), 2*refCalibTokens)
	}
	for i, s := range seqs {
		for j, id := range s {
			if got := int(binary.LittleEndian.Uint16(b[2*(i*refSeqLen+j):])); got != id {
				t.Fatalf("%s: token %d is %d, SampleSequences gives %d", path, i*refSeqLen+j, got, id)
			}
		}
	}
	return seqs
}

// refSetup is a reference model with its database (built once per test
// binary, in a temporary folder).
type refSetup struct {
	spec    string
	m       *model.Model
	tok     tokenizer.Tokenizer
	calib   [][]int
	db      *Database
	heldOut []int // 16384 tokens of TinyStories documents 3000 onwards
}

var (
	refMu    sync.Mutex
	refCache = map[string]*refSetup{}
	refDir   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if refDir != "" {
		os.RemoveAll(refDir)
	}
	os.Exit(code)
}

func refDB(t testing.TB, key string) *refSetup {
	t.Helper()
	needMirror(t)
	if testing.Short() {
		t.Skip("real-model database: skipped with -short")
	}
	refMu.Lock()
	defer refMu.Unlock()
	if r := refCache[key]; r != nil {
		return r
	}
	var spec string
	for _, rm := range refModels {
		if rm.key == key {
			spec = rm.spec
		}
	}
	m, tok := openModel(t, spec)
	r := &refSetup{spec: spec, m: m, tok: tok, calib: refCalib(t, key, tok)}
	if refDir == "" {
		d, err := os.MkdirTemp("", "prune-ref-")
		if err != nil {
			t.Fatal(err)
		}
		refDir = d
	}
	dir := filepath.Join(refDir, key)
	if err := Build(context.Background(), cpu(t), m, r.calib, BuildOptions{Levels: 10, ModelID: spec}, dir); err != nil {
		t.Fatal(err)
	}
	db, err := OpenDatabase(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.db = db
	docs, err := data.ReadTexts(tinyStories + "[3000:]")
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(strings.Join(docs, "\n\n"))
	if len(ids) < 16384 {
		t.Fatalf("held-out text has %d tokens", len(ids))
	}
	r.heldOut = ids[:16384]
	refCache[key] = r
	return r
}

type torchRef struct {
	Generator string `json:"generator"`
	Models    map[string]struct {
		Modules []struct {
			Name   string    `json:"name"`
			Order  []int     `json:"order"`
			Errors []float64 `json:"errors"`
		} `json:"modules"`
	} `json:"models"`
}

// The greedy removal order on both tiny models equals that of an
// independent PyTorch implementation of the reference's pass
// (testdata/gen/obs_ref.py, float64, activations from its own forward).
func TestRemovalOrderMatchesTorch(t *testing.T) {
	needMirror(t)
	for _, rm := range refModels {
		t.Run(rm.key, func(t *testing.T) {
			r := refDB(t, rm.key)
			raw, err := os.ReadFile(filepath.Join("testdata", "obs_ref.json"))
			if err != nil {
				t.Fatal(err)
			}
			var ref torchRef
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatal(err)
			}
			db := r.db
			want := ref.Models[rm.key].Modules
			if len(want) != len(db.Man.Modules) {
				t.Fatalf("reference has %d modules, database %d", len(want), len(db.Man.Modules))
			}
			for i, mod := range db.Man.Modules {
				w := want[i]
				if w.Name != mod.Name {
					t.Fatalf("module %d: %s, reference %s", i, mod.Name, w.Name)
				}
				greedy := mod.Levels[len(mod.Levels)-2].Removed // the last level removes the rest at once
				if !slices.Equal(mod.RemovalOrder[:greedy], w.Order) {
					t.Errorf("%s: order %v, PyTorch %v", mod.Name, mod.RemovalOrder[:greedy], w.Order)
				}
				for l, lv := range mod.Levels[:len(mod.Levels)-1] {
					if e := w.Errors[l]; math.Abs(lv.Error-e) > 1e-4*math.Max(e, 1e-12) {
						t.Errorf("%s level %d: error %.8g, PyTorch %.8g", mod.Name, l, lv.Error, e)
					}
				}
			}
		})
	}
}
