package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// hubMirror returns the read-only Hugging Face mirror named by
// DARWINLM_HUB_MIRROR (relative paths resolve against the repo root), or
// skips the test when it is unset or missing.
func hubMirror(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("DARWINLM_HUB_MIRROR")
	if dir == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	dir = resolveMirror(dir)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("DARWINLM_HUB_MIRROR %q: %v", dir, err)
	}
	return dir
}

// resolveMirror resolves a relative mirror path against the repo root, one
// level above the package directory the tests run in.
func resolveMirror(dir string) string {
	if !filepath.IsAbs(dir) {
		if _, err := os.Stat(dir); err != nil {
			return filepath.Join("..", dir)
		}
	}
	return dir
}

func mirrorPath(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(hubMirror(t), rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s missing from the mirror: %v", rel, err)
	}
	return p
}

type goldenLine struct {
	Text             string `json:"text"`
	IDs              []int  `json:"ids"`
	AddSpecialTokens bool   `json:"add_special_tokens"`
}

func readGolden(t testing.TB, path string) []goldenLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var g goldenLine
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no lines", path)
	}
	return out
}

func mustLoad(t testing.TB, path string) Tokenizer {
	t.Helper()
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var (
	storiesOnce sync.Once
	storiesText string
	storiesErr  error
)

// tinyStories returns the TinyStories validation prefix of the mirror, rows
// joined with "\n\n", cut to n bytes at a rune boundary.
func tinyStories(t testing.TB, n int) string {
	t.Helper()
	p := mirrorPath(t, "datasets/roneneldan/TinyStories/default/validation_prefix.parquet")
	storiesOnce.Do(func() {
		rows, err := parquet.ReadFile[struct {
			Text string `parquet:"text"`
		}](p)
		if err != nil {
			storiesErr = err
			return
		}
		var texts []string
		for _, r := range rows {
			texts = append(texts, r.Text)
		}
		storiesText = strings.Join(texts, "\n\n")
	})
	if storiesErr != nil {
		t.Fatal(storiesErr)
	}
	s := storiesText
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") // drop a rune cut in half
	}
	if len(s) < n/2 {
		t.Fatalf("TinyStories text has only %d bytes", len(s))
	}
	return s
}

func diffIDs(got, want []int) string {
	if slices.Equal(got, want) {
		return ""
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return "first difference at index " + itoa(i) + ": got " + jsonString(got) + " want " + jsonString(want)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }
