// Package tokenizer implements, in pure Go, the tokenizers of the models this
// project loads: Hugging Face tokenizer.json (SentencePiece-style BPE with
// byte fallback, and byte-level BPE), llama2.c tokenizer.bin and SentencePiece
// tokenizer.model, plus the byte-level vocab.json+merges.txt and Llama-3
// tiktoken files.
//
// Entry points: Load (a file or a model folder), ParseHFJSON,
// ParseLlama2cBin, ParseSentencePiece, ParseVocabMerges, ParseTiktoken. The
// concrete types are *HFTokenizer (every JSON and byte-level route) and
// *ScoreBPE (llama2.c and SentencePiece). Encode is safe for concurrent use.
package tokenizer

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	// Encode tokenizes text without adding special tokens (no BOS/EOS).
	Encode(text string) []int
	// Decode turns ids back into text. Special tokens such as BOS are skipped.
	Decode(ids []int) string
	// VocabSize is the number of ids the tokenizer can produce.
	VocabSize() int
	// BOS and EOS are the special ids, or -1 when the tokenizer has none.
	BOS() int
	EOS() int
	// AddBOS reports whether the tokenizer's configuration prepends BOS when
	// special tokens are requested (add_bos_token; llama2.c always does).
	AddBOS() bool
}

var (
	_ Tokenizer = (*HFTokenizer)(nil)
	_ Tokenizer = (*ScoreBPE)(nil)
)

// EncodeSpecial encodes text and prepends BOS when the tokenizer is
// configured to add it.
func EncodeSpecial(t Tokenizer, text string) []int {
	ids := t.Encode(text)
	if t.AddBOS() && t.BOS() >= 0 {
		ids = append([]int{t.BOS()}, ids...)
	}
	return ids
}
