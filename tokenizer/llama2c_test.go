package tokenizer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var llama2cFiles = map[string]string{
	"stories260K/tok512.bin":         "models/karpathy/tinyllamas/stories260K/tok512.bin",
	"llama2-tokenizer/tokenizer.bin": "models/meta-llama/llama2-tokenizer/tokenizer.bin",
}

// TestLlama2cGolden compares with testdata/llama2c_golden.json, written by
// testdata/gen/llama2c_golden.py, a direct Python port of run.c's encode.
func TestLlama2cGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/llama2c_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string][]struct {
		B64 string `json:"b64"`
		IDs []int  `json:"ids"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden) != len(llama2cFiles) {
		t.Fatalf("golden file has %d tokenizers, want %d", len(golden), len(llama2cFiles))
	}
	for name, rel := range llama2cFiles {
		t.Run(name, func(t *testing.T) {
			tok := mustLoad(t, mirrorPath(t, rel))
			lines := golden[name]
			if len(lines) < 20 {
				t.Fatalf("only %d golden lines", len(lines))
			}
			for i, g := range lines {
				text, err := base64.StdEncoding.DecodeString(g.B64)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffIDs(tok.Encode(string(text)), g.IDs); d != "" {
					t.Errorf("line %d %q: %s", i, text, d)
				}
				// EncodeSpecial prepends BOS 1, as run.c does with bos=1.
				if sp := EncodeSpecial(tok, string(text)); len(sp) != len(g.IDs)+1 || sp[0] != 1 {
					t.Errorf("line %d: EncodeSpecial = %v, want 1 then %v", i, sp, g.IDs)
				}
			}
		})
	}
}

// TestLlama2cKnownIDs pins llama2.c test.c's published expectations.
func TestLlama2cKnownIDs(t *testing.T) {
	tok := mustLoad(t, mirrorPath(t, llama2cFiles["llama2-tokenizer/tokenizer.bin"]))
	cases := map[string][]int{
		"":                                 {1},
		"I believe the meaning of life is": {1, 306, 4658, 278, 6593, 310, 2834, 338},
		"Simply put, the theory of relativity states that ": {1, 3439, 17632, 1925, 29892, 278, 6368, 310, 14215, 537, 5922, 393, 29871},
	}
	for text, want := range cases {
		if d := diffIDs(EncodeSpecial(tok, text), want); d != "" {
			t.Errorf("%q: %s", text, d)
		}
	}
	if tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() || tok.VocabSize() != 32000 {
		t.Errorf("BOS %d EOS %d AddBOS %v VocabSize %d", tok.BOS(), tok.EOS(), tok.AddBOS(), tok.VocabSize())
	}
}

// naiveLlama2c is run.c's O(n^2) merge loop, used to check the heap version
// on text too long for the Python generator.
func naiveLlama2c(t *ScoreBPE, ids []int) []int {
	ids = slices.Clone(ids)
	for {
		best, bestID, bestIdx := float32(-1e10), -1, -1
		for i := 0; i+1 < len(ids); i++ {
			id, ok := t.lookup[t.pieces[ids[i]]+t.pieces[ids[i+1]]]
			if ok && t.scores[id] > best {
				best, bestID, bestIdx = t.scores[id], int(id), i
			}
		}
		if bestIdx < 0 {
			return ids
		}
		ids[bestIdx] = bestID
		ids = slices.Delete(ids, bestIdx+1, bestIdx+2)
	}
}

func TestLlama2cHeapMatchesNaive(t *testing.T) {
	text := tinyStories(t, 6000)
	for name, rel := range llama2cFiles {
		tok := mustLoad(t, mirrorPath(t, rel)).(*ScoreBPE)
		// Unmerged symbols: encode with merging disabled.
		var start []int
		for _, r := range text {
			s := string(r)
			if id, ok := tok.lookup[s]; ok {
				start = append(start, int(id))
			} else {
				for _, b := range []byte(s) {
					start = append(start, int(b)+3)
				}
			}
		}
		start = append([]int{int(tok.lookup[" "])}, start...)
		want := naiveLlama2c(tok, start)
		if d := diffIDs(tok.Encode(text), want); d != "" {
			t.Errorf("%s: %s", name, d)
		}
	}
}

func TestLlama2cDecode(t *testing.T) {
	tok := mustLoad(t, mirrorPath(t, llama2cFiles["llama2-tokenizer/tokenizer.bin"]))
	ids := EncodeSpecial(tok, "Hello world")
	if got := tok.Decode(ids); got != "Hello world" {
		t.Errorf("Decode(%v) = %q", ids, got)
	}
	// run.c strips the leading space right after BOS; Decode treats the
	// start of ids the same way, since Encode adds no BOS.
	for _, c := range []struct {
		ids  []int
		want string
	}{
		{[]int{15043, 1, 15043}, "HelloHello"},
		{[]int{15043, 15043, 2}, "Hello Hello"},
		{[]int{1, 1, 15043}, "Hello"},
	} {
		if got := tok.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
	// <0xE4><0xB8><0xAD> is "中" via byte fallback (ids = byte+3).
	if got := tok.Decode([]int{0xE4 + 3, 0xB8 + 3, 0xAD + 3}); got != "中" {
		t.Errorf("byte pieces decode to %q", got)
	}
}

// TestLlama2cRoundTrip: decode(encode(x)) == x on 100 KB of TinyStories.
// Every byte is representable (byte fallback), so no exception is needed.
func TestLlama2cRoundTrip(t *testing.T) {
	text := tinyStories(t, 100_000)
	tok := mustLoad(t, mirrorPath(t, llama2cFiles["stories260K/tok512.bin"]))
	ids := tok.Encode(text)
	if got := tok.Decode(ids); got != text {
		i := 0
		for i < len(got) && i < len(text) && got[i] == text[i] {
			i++
		}
		t.Fatalf("round trip differs at byte %d: got %q want %q", i, clip(got, i), clip(text, i))
	}
	if len(ids) >= len(text)/2 {
		t.Errorf("%d ids for %d bytes: merges are not happening", len(ids), len(text))
	}
}

func clip(s string, i int) string {
	return s[max(0, i-20):min(len(s), i+40)]
}

func TestLlama2cBadInput(t *testing.T) {
	data, err := os.ReadFile(mirrorPath(t, llama2cFiles["stories260K/tok512.bin"]))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []int{0, 2, 4, 10, len(data) - 3} {
		p := filepath.Join(dir, "tokenizer.bin")
		if err := os.WriteFile(p, data[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("truncated to %d bytes: err = %v, want an error naming %s", n, err, p)
		}
	}
	// A negative length must not panic or allocate.
	bad := bytes.Clone(data[:16])
	copy(bad[8:12], []byte{0xff, 0xff, 0xff, 0xff})
	if _, err := ParseLlama2cBin(bytes.NewReader(bad)); err == nil {
		t.Error("negative token length accepted")
	}
}
