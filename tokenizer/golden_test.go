package tokenizer

import (
	"path/filepath"
	"testing"
)

// TestGoldenIDs checks every line of the mirror's golden_ids.jsonl, produced
// by @huggingface/tokenizers 0.2.0 and cross-checked with SentencePiece.
func TestGoldenIDs(t *testing.T) {
	cases := []struct {
		model string
		file  string // what Load is given, relative to the model folder ("" = the folder)
	}{
		{"openai-community/gpt2", ""},
		{"openai-community/gpt2", "vocab.json"}, // the vocab.json+merges.txt route
		{"HuggingFaceTB/SmolLM2-135M", ""},
		{"meta-llama/Llama-2-7b-hf", ""},
		{"meta-llama/Llama-2-7b-hf", "tokenizer.model"}, // the SentencePiece route
		{"raincandy-u/TinyStories-656K", ""},
	}
	for _, c := range cases {
		t.Run(c.model+"/"+c.file, func(t *testing.T) {
			dir := mirrorPath(t, filepath.Join("models", c.model))
			tok := mustLoad(t, filepath.Join(dir, c.file))
			lines := readGolden(t, filepath.Join(dir, "golden_ids.jsonl"))
			for i, g := range lines {
				var got []int
				if g.AddSpecialTokens {
					got = EncodeSpecial(tok, g.Text)
				} else {
					got = tok.Encode(g.Text)
				}
				if d := diffIDs(got, g.IDs); d != "" {
					t.Errorf("line %d %q (special=%v): %s", i+1, g.Text, g.AddSpecialTokens, d)
				}
			}
		})
	}
}
