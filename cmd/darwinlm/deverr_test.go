package main

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

// letterTok decodes id i as one letter; it encodes nothing (the test gives
// ids).
type letterTok struct{}

func (letterTok) Encode(string) []int { return nil }
func (letterTok) Decode(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteByte(byte('a' + id%26))
	}
	return b.String()
}
func (letterTok) VocabSize() int { return 40 }
func (letterTok) BOS() int       { return -1 }
func (letterTok) EOS() int       { return -1 }
func (letterTok) AddBOS() bool   { return false }

// A device failure at any point of generation (the prompt's step or a
// token's; a GPU out of memory, on the host device and on a copying one
// that takes the GPU's code paths) is returned as an error naming where it
// stopped, never a panic; without one, generation on the copying device
// prints the host's text.
func TestGenerateDeviceFailureIsAnError(t *testing.T) {
	m := modeltest.Random(modeltest.Cfg{Heads: 2, KV: 1, HD: 4, Hidden: 8, Inter: 12, Vocab: 40, Layers: 2}, false, 2)
	var texts []string
	for _, copyDev := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "copy"}[copyDev], func(t *testing.T) {
			var out bytes.Buffer
			modeltest.Sweep(t, 40, func(fb modeltest.FailBackend) error {
				out.Reset()
				return generate(&out, fb, m, letterTok{}, []int{3, 9, 4}, 12, 0.8, 0.9, rand.New(rand.NewPCG(1, 2)))
			}, copyDev, cpu.New(), func(n int) {
				if !strings.HasPrefix(out.String(), "dje") && out.Len() != 0 {
					t.Errorf("failing call %d: printed %q", n, out.String())
				}
			})
			out.Reset()
			if err := generate(&out, modeltest.FailBackend{Backend: cpu.New(), F: &modeltest.Fault{}, Copy: copyDev}, m, letterTok{}, []int{3, 9, 4}, 12, 0.8, 0.9, rand.New(rand.NewPCG(1, 2))); err != nil {
				t.Fatal(err)
			}
			if len(out.String()) != 13 { // 12 letters and a newline
				t.Errorf("printed %q", out.String())
			}
			texts = append(texts, out.String())
		})
	}
	if len(texts) == 2 && texts[0] != texts[1] {
		t.Errorf("copying device printed %q, host %q", texts[1], texts[0])
	}
}
