package tokenizer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

const (
	tinyStoriesJSON = "models/raincandy-u/TinyStories-656K"
	stories260KBin  = "models/karpathy/tinyllamas/stories260K/tok512.bin"
)

// TestRoundTripTinyStoriesJSON: decode(encode(x)) on 100 KB of TinyStories
// with the TinyStories-656K tokenizer.json. Its 2048-token vocabulary has no
// <0xNN> byte tokens, so byte_fallback cannot help: a character missing from
// the vocabulary becomes <unk> (runs fused by fuse_unk), and Decode skips
// <unk> as a special token. The expected text is therefore x without those
// characters, computed here from the vocabulary, not from the tokenizer.
func TestRoundTripTinyStoriesJSON(t *testing.T) {
	text := tinyStories(t, 100_000)
	tok := mustLoad(t, mirrorPath(t, tinyStoriesJSON)).(*HFTokenizer)
	var want strings.Builder
	dropped := 0
	for _, r := range text {
		s := string(r)
		if r == ' ' {
			s = "▁" // the Replace normalizer's spelling of a space
		}
		if _, ok := tok.model.vocab[s]; ok {
			want.WriteRune(r)
		} else {
			dropped++
		}
	}
	got := tok.Decode(tok.Encode(text))
	if got != want.String() {
		i := 0
		for i < len(got) && i < want.Len() && got[i] == want.String()[i] {
			i++
		}
		t.Fatalf("round trip differs at byte %d: got %q want %q", i, clip(got, i), clip(want.String(), i))
	}
	t.Logf("%d bytes, %d characters not in the vocabulary", len(text), dropped)
	if dropped > len(text)/100 {
		t.Errorf("%d unrepresentable characters: the vocabulary lookup is wrong", dropped)
	}
}

// TestRoundTripExact checks decode(encode(x)) == x where every character is
// representable: byte-level vocabularies and byte fallback.
func TestRoundTripExact(t *testing.T) {
	texts := []string{
		"",
		" ",
		"   ",
		"\n\n\t \r\n",
		"Hello world",
		"  leading and trailing  ",
		"中文分词测试：你好，世界！",
		"Emoji: 😀 🚀 👍🏽 ❤️ 👨‍👩‍👧",
		"combining: e\u0301 a\u0308 \u0915\u094d\u0937",
		"non\u00a0breaking",
		"x\u0000y\u0001\u007f",
		"'s 'LL 1234567 3.14",
	}
	models := []string{
		"models/openai-community/gpt2",
		"models/HuggingFaceTB/SmolLM2-135M",
		"models/meta-llama/Llama-2-7b-hf",
		"models/meta-llama/Llama-2-7b-hf/tokenizer.model",
		"models/meta-llama/llama2-tokenizer/tokenizer.bin",
		"models/meta-llama/Llama-3.1-8B/original/tokenizer.model",
		stories260KBin,
	}
	for _, m := range models {
		tok := mustLoad(t, mirrorPath(t, m))
		for _, s := range texts {
			ids := tok.Encode(s)
			if s == "" && len(ids) != 0 {
				t.Errorf("%s: Encode(\"\") = %v", m, ids)
			}
			if got := tok.Decode(ids); got != s {
				t.Errorf("%s: Decode(Encode(%q)) = %q (ids %v)", m, s, got, ids)
			}
		}
	}
}

// TestByteFallback: characters outside Llama-2's vocabulary become their
// UTF-8 bytes as <0xNN> tokens (id = byte + 3).
func TestByteFallback(t *testing.T) {
	tok := mustLoad(t, mirrorPath(t, "models/meta-llama/Llama-2-7b-hf")).(*HFTokenizer)
	ids := tok.Encode("🦙")
	want := []int{29871} // "▁"
	for _, b := range []byte("🦙") {
		want = append(want, int(b)+3)
	}
	if d := diffIDs(ids, want); d != "" {
		t.Errorf("Encode(🦙): %s", d)
	}
	for _, id := range ids[1:] {
		if _, ok := byteToken(tok.Token(id)); !ok {
			t.Errorf("id %d is %q, not a byte token", id, tok.Token(id))
		}
	}
	if got := tok.Decode(ids); got != "🦙" {
		t.Errorf("Decode = %q", got)
	}
	// A run of byte tokens that is not valid UTF-8 becomes one U+FFFD per
	// token, as in HF's ByteFallback decoder; the next run starts afresh.
	if got := tok.Decode([]int{0xF0 + 3, 0x41 + 3, 29871, 0x41 + 3}); got != "\uFFFD\uFFFD A" {
		t.Errorf("Decode(<0xF0><0x41>▁<0x41>) = %q", got)
	}
}

// TestSpecialTokens covers BOS/EOS/AddBOS for each file type and that
// Decode skips special tokens.
func TestSpecialTokens(t *testing.T) {
	cases := []struct {
		path     string
		bos, eos int
		addBOS   bool
		vocab    int
	}{
		{"models/openai-community/gpt2", 50256, 50256, false, 50257},
		{"models/HuggingFaceTB/SmolLM2-135M", 0, 0, false, 49152},
		{"models/meta-llama/Llama-2-7b-hf", 1, 2, true, 32000},
		{"models/meta-llama/Llama-2-7b-hf/tokenizer.model", 1, 2, true, 32000},
		{tinyStoriesJSON, 1, 2, true, 2048},
		{stories260KBin, 1, 2, true, 512},
		{"models/meta-llama/Llama-3.1-8B", 128000, 128001, true, 128256},
		{"models/Qwen/Qwen2.5-14B-Instruct", 151643, 151645, false, 151646}, // config.json ids
	}
	for _, c := range cases {
		tok := mustLoad(t, mirrorPath(t, c.path))
		if tok.BOS() != c.bos || tok.EOS() != c.eos || tok.AddBOS() != c.addBOS || tok.VocabSize() != c.vocab {
			t.Errorf("%s: BOS %d EOS %d AddBOS %v VocabSize %d; want %d %d %v %d",
				c.path, tok.BOS(), tok.EOS(), tok.AddBOS(), tok.VocabSize(), c.bos, c.eos, c.addBOS, c.vocab)
		}
		ids := EncodeSpecial(tok, "Hi there")
		if c.addBOS != (len(ids) > 0 && ids[0] == c.bos) {
			t.Errorf("%s: EncodeSpecial = %v", c.path, ids)
		}
		if c.bos >= 0 {
			if got, want := tok.Decode(append(ids, c.eos)), tok.Decode(tok.Encode("Hi there")); got != want || got != "Hi there" {
				t.Errorf("%s: Decode with specials = %q, want %q", c.path, got, want)
			}
		}
	}
}

// TestLlama3Tiktoken pins published ids for the Llama-3 vocabulary (ollama's
// tests and Meta's): the tiktoken route with the Llama-3 split regex.
func TestLlama3Tiktoken(t *testing.T) {
	tok := mustLoad(t, mirrorPath(t, "models/meta-llama/Llama-3.1-8B/original/tokenizer.model"))
	cases := map[string][]int{
		"hello world":                   {15339, 1917},
		"hello <|end_of_text|>":         {15339, 220, 128001},
		"1234567":                       {4513, 10961, 22},
		"0":                             {15},
		"00":                            {410},
		"000":                           {931},
		"0000":                          {931, 15},
		"00000":                         {931, 410},
		"000000":                        {931, 931},
		"0000000":                       {931, 931, 15},
		"<|begin_of_text|>hello world":  {128000, 15339, 1917},
		"x\u00a0\u00a0y":                nil, // checked below against the regex split
		"I believe the meaning of life": {40, 4510, 279, 7438, 315, 2324},
	}
	for text, want := range cases {
		if want == nil {
			continue
		}
		if d := diffIDs(tok.Encode(text), want); d != "" {
			t.Errorf("%q: %s", text, d)
		}
	}
	// \s is Unicode-aware (regexp2.None, not RE2 mode): "x\u00a0\u00a0y"
	// splits as ["x" "\u00a0" "\u00a0y"].
	want := append(append(tok.Encode("x"), tok.Encode("\u00a0")...), tok.Encode("\u00a0y")...)
	if d := diffIDs(tok.Encode("x\u00a0\u00a0y"), want); d != "" {
		t.Errorf("NBSP split: %s", d)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := Load(filepath.Join(dir, "missing", "tokenizer.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("empty folder accepted")
	}
	cases := []struct {
		name, content, want string
	}{
		{"a/tokenizer.json", `{"model":{"type":"Unigram","vocab":[["a",0]]}}`, `tokenizer.json: model.type "Unigram" not supported`},
		{"b/tokenizer.json", `{"model":{"type":"WordPiece","vocab":{"a":0}}}`, `model.type "WordPiece" not supported`},
		{"c/tokenizer.json", `{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}`, `model.merges[0]: token "b" not in model.vocab`},
		{"d/tokenizer.json", `{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"BertPreTokenizer"}}`, `pre_tokenizer.type "BertPreTokenizer" not supported`},
		{"e/tokenizer.json", `{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"normalizer":{"type":"Sequence","normalizers":[{"type":"Precompiled"}]}}`, `normalizer.normalizers[0].type "Precompiled" not supported`},
		{"f/tokenizer.json", `{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated"}}`, `pre_tokenizer.pattern.Regex`},
		{"g/tokenizer.json", `{"model":{"type":"BPE","vocab":{"a":99999999},"merges":[]}}`, `model.vocab["a"]: id 99999999 out of range`},
		{"h/tokenizer.json", `not json`, `tokenizer.json: invalid JSON`},
		{"i/tokenizer.bin", "\x07\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00ab", `tokenizer.bin: token 0: 5 bytes: file truncated`},
		{"j/tokenizer.model", "\x0a\x03\x0a\x01a", `trainer_spec.model_type 1 not supported`},
		{"k/vocab.json", `{"a":0}`, `merges.txt`},
	}
	for _, c := range cases {
		p := write(c.name, c.content)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want it to name %s and contain %q", c.name, err, p, c.want)
		}
	}
}

// TestConcurrentEncode: the word cache is shared; run under -race.
func TestConcurrentEncode(t *testing.T) {
	tok := mustLoad(t, mirrorPath(t, "models/openai-community/gpt2"))
	text := tinyStories(t, 20_000)
	want := tok.Encode(text)
	done := make(chan []int)
	for range 4 {
		go func() { done <- tok.Encode(text) }()
	}
	for range 4 {
		if got := <-done; !slices.Equal(got, want) {
			t.Error("concurrent Encode differs")
		}
	}
}

// TestSegmentedMergeMatchesWhole: splitting a long word at boundaries no
// merge can cross (segmenter) must not change the ids. Llama-2-style files
// have no pre-tokenizer, so 30 KB of text is a single word.
func TestSegmentedMergeMatchesWhole(t *testing.T) {
	text := tinyStories(t, 30_000)
	for _, m := range []string{tinyStoriesJSON, "models/meta-llama/Llama-2-7b-hf"} {
		tok := mustLoad(t, mirrorPath(t, m)).(*HFTokenizer)
		bm := tok.model
		syms := bm.initialSymbols(tok.normalize(text))
		whole := bpeMerge(slices.Clone(syms), bm.pair)
		seg := bpeMergeSegments(slices.Clone(syms), bm.pair, bm.segmenter())
		if !slices.Equal(whole, seg) {
			t.Errorf("%s: segmented merge differs (%d vs %d ids)", m, len(seg), len(whole))
		}
		cuts := 0
		for i := 1; i < len(syms); i++ {
			if !bm.segmenter().canCross(syms[i-1], syms[i]) {
				cuts++
			}
		}
		t.Logf("%s: %d cuts in %d symbols", m, cuts, len(syms))
		if cuts < len(syms)/100 {
			t.Errorf("%s: only %d cuts in %d symbols", m, cuts, len(syms))
		}
		ids := tok.Encode(text)
		if len(ids) != len(whole) {
			t.Errorf("%s: Encode gives %d ids, whole-word merge %d", m, len(ids), len(whole))
		}
	}
}

// TestGPT2SplitMatchesRegex checks the hand-written ByteLevel splitter
// against regexp2 running the GPT-2 pattern, on every rune up to U+2FFFF in
// several contexts and on TinyStories text.
func TestGPT2SplitMatchesRegex(t *testing.T) {
	re := regexp2.MustCompile(gpt2Pattern, regexp2.None)
	var sb strings.Builder
	for r := rune(0); r < 0x30000; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		c := string(r)
		sb.WriteString(c + c + " " + c + "a" + c + "'" + c + "1  " + c)
		if r%64 == 0 {
			sb.WriteString("'s 'll 're 've 'm 'd 't 'x 'L ' ''  \n\n \t x  \r\n")
		}
	}
	texts := []string{sb.String(), "", " ", "  ", "a", " a", "  a", "a  ", "\n", " \n ", "'", "' ", "'ll", "'lx", "'re", "'r"}
	if os.Getenv("DARWINLM_HUB_MIRROR") != "" {
		texts = append(texts, tinyStories(t, 100_000))
	}
	for _, s := range texts {
		got, want := gpt2Split(s), regexMatches(re, s)
		if !slices.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			at := 0
			if i < len(want) {
				at = want[i][0]
			}
			t.Fatalf("split differs at match %d (byte %d, %q): got %v want %v", i, at, clip(s, at), got[i:min(i+3, len(got))], want[i:min(i+3, len(want))])
		}
	}
}
