package model_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/safetensors"
	"github.com/darwinlm/darwinlm-go/torchbin"
)

// The PyTorch checkpoints of testdata/torchbin (written by
// testdata/gen/torch_bin.py with torch 1.13) load tensor for tensor and bit
// for bit as their safetensors twins (written by the script from the raw
// bits with numpy), and the loaded models give bitwise the same logits.
func TestTorchBinMatchesSafetensorsTwin(t *testing.T) {
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ dir, twin string }{
		{"f32", "f32"}, {"f16", "f16"}, {"bf16", "bf16"}, {"sharded", "bf16"},
	} {
		t.Run(c.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", "torchbin", c.dir)
			twinPath := filepath.Join("testdata", "torchbin", c.twin, "twin.safetensors")
			// Every tensor, raw bytes and float32, against the twin.
			set, err := torchbin.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			twin, err := safetensors.Open(twinPath)
			if err != nil {
				t.Fatal(err)
			}
			defer twin.Close()
			n := 0
			for _, f := range set.Files {
				for _, tt := range f.Tensors {
					n++
					want, wi, err := twin.Bytes(tt.Name)
					if err != nil {
						t.Fatal(err)
					}
					got, _, err := f.Bytes(tt.Name)
					if err != nil {
						t.Fatal(err)
					}
					if tt.DType != wi.DType || !slices.Equal(tt.Shape, wi.Shape) || !bytes.Equal(got, want) {
						t.Fatalf("%s: %s %v differs from the twin's %s %v", tt.Name, tt.DType, tt.Shape, wi.DType, wi.Shape)
					}
					gf, _, err := f.Float32(tt.Name)
					if err != nil {
						t.Fatal(err)
					}
					wf, _, _ := twin.Float32(tt.Name)
					for i := range wf {
						if math.Float32bits(gf[i]) != math.Float32bits(wf[i]) {
							t.Fatalf("%s[%d]: %v, twin %v", tt.Name, i, gf[i], wf[i])
						}
					}
				}
			}
			if n != len(twin.Tensors) || n != 2*10+3 {
				t.Fatalf("%d tensors in the checkpoint, %d in the twin, want 23", n, len(twin.Tensors))
			}
			if c.dir == "sharded" && len(set.Files) != 2 {
				t.Fatalf("%d shards, want 2", len(set.Files))
			}

			// The models: the .bin folder and a safetensors folder of the twin.
			stDir := t.TempDir()
			cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			tw, err := os.ReadFile(twinPath)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(stDir, "config.json"), cfg, 0o644)
			os.WriteFile(filepath.Join(stDir, "model.safetensors"), tw, 0o644)
			mb, err := model.LoadHF(dir)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := model.LoadHF(stDir)
			if err != nil {
				t.Fatal(err)
			}
			same := func(name string, a, b []float32) {
				t.Helper()
				if len(a) != len(b) || len(a) == 0 && name != "bias" {
					t.Fatalf("%s: %d vs %d values", name, len(a), len(b))
				}
				for i := range a {
					if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
						t.Fatalf("%s[%d]: %v vs %v", name, i, a[i], b[i])
					}
				}
			}
			same("embed", mb.Embed, ms.Embed)
			same("lm_head", mb.LMHead, ms.LMHead)
			same("norm", mb.Norm, ms.Norm)
			for i := range mb.Layers {
				ta, tb := mb.Layers[i].Tensors(), ms.Layers[i].Tensors()
				for k := range ta {
					if len(*ta[k]) == 0 && len(*tb[k]) == 0 {
						continue
					}
					same(model.LayerTensorName(i, model.LayerTensor(k)), *ta[k], *tb[k])
				}
			}
			seqs := [][]int{{1, 5, 9, 47, 3, 0, 22}, {2, 2, 40}}
			lb, ls := mb.Forward(be, seqs), ms.Forward(be, seqs)
			same("logits", lb, ls)
			// And through Open's checks (finite weights); no tokenizer here.
			if _, _, err := model.Open(dir, ""); err == nil || !strings.Contains(err.Error(), "tokenizer") {
				t.Fatalf("Open without a tokenizer: %v, want a tokenizer error", err)
			}
		})
	}
}

// A folder with both formats loads the safetensors file; one with neither
// names all four file names.
func TestTorchBinFolderChoice(t *testing.T) {
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "config.json"), mustRead(t, "testdata/torchbin/f32/config.json"), 0o644)
	_, err := model.LoadHF(empty)
	if err == nil || !strings.Contains(err.Error(), "pytorch_model.bin.index.json") || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("empty folder: %v", err)
	}
	// Both: a corrupt pytorch_model.bin beside a good model.safetensors is never read.
	both := t.TempDir()
	os.WriteFile(filepath.Join(both, "config.json"), mustRead(t, "testdata/torchbin/f32/config.json"), 0o644)
	os.WriteFile(filepath.Join(both, "model.safetensors"), mustRead(t, "testdata/torchbin/f32/twin.safetensors"), 0o644)
	os.WriteFile(filepath.Join(both, "pytorch_model.bin"), []byte("garbage"), 0o644)
	if _, err := model.LoadHF(both); err != nil {
		t.Fatal(err)
	}
	// Only the corrupt .bin: its error names the file.
	os.Remove(filepath.Join(both, "model.safetensors"))
	if _, err := model.LoadHF(both); err == nil || !strings.Contains(err.Error(), "pytorch_model.bin") {
		t.Fatalf("corrupt .bin: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Open of the pytorch_model.bin file itself says to pass the folder.
func TestTorchBinOpenFile(t *testing.T) {
	_, _, err := model.Open("testdata/torchbin/f32/pytorch_model.bin", "")
	if err == nil || !strings.Contains(err.Error(), "pass the folder holding config.json and pytorch_model.bin") {
		t.Fatalf("Open(file): %v", err)
	}
}
