package tokenizer

import (
	"strings"
	"testing"
)

// BenchmarkEncodeTinyStories encodes 2 MB of TinyStories text (the mirror's
// 0.8 MB validation prefix, repeated);
// b.SetBytes makes -bench report MB/s. The per-word cache stays warm across
// iterations, as it would over a long evaluation run.
//
//	DARWINLM_HUB_MIRROR=../shared/hf go test ./tokenizer/ -run '^$' -bench EncodeTinyStories -benchtime 3x
func BenchmarkEncodeTinyStories(b *testing.B) {
	text := tinyStories(b, 700_000)
	for len(text) < 2<<20 {
		text += "\n\n" + text
	}
	text = text[:2<<20]
	text = strings.ToValidUTF8(text, "")
	for _, c := range []struct{ name, path string }{
		{"TinyStories-656K.json", tinyStoriesJSON},
		{"stories260K.tok512.bin", stories260KBin},
		{"Llama-2.json", "models/meta-llama/Llama-2-7b-hf"},
		{"gpt2.json", "models/openai-community/gpt2"},
		{"SmolLM2.json", "models/HuggingFaceTB/SmolLM2-135M"},
		{"Llama-3.tiktoken", "models/meta-llama/Llama-3.1-8B/original/tokenizer.model"},
	} {
		b.Run(c.name, func(b *testing.B) {
			tok := mustLoad(b, mirrorPath(b, c.path))
			b.SetBytes(int64(len(text)))
			b.ResetTimer()
			n := 0
			for range b.N {
				n = len(tok.Encode(text))
			}
			b.ReportMetric(float64(len(text))/float64(n), "bytes/token")
		})
	}
}
