package data

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// FuzzReadTexts feeds arbitrary bytes to the text, JSON-lines and parquet
// readers (kind picks the file type): they must return documents or an
// error naming the file, never panic or hang, and every document they
// return is valid UTF-8. Seeds: testdata/fuzz/FuzzReadTexts (committed) and
// the cases below.
func FuzzReadTexts(f *testing.F) {
	type row struct {
		Text string `parquet:"text"`
		N    int64  `parquet:"n"`
	}
	var pq bytes.Buffer
	if err := parquet.Write(&pq, []row{{"Once upon a time", 1}, {"", 2}, {"é\n\n", 3}}); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("plain text\nwith lines\n"), uint8(0))
	f.Add([]byte("bad \xff byte"), uint8(0))
	f.Add([]byte("nul\x00byte"), uint8(0))
	f.Add([]byte("{\"text\":\"a\"}\n\n{\"text\":\"b\",\"x\":[1,2]}\n"), uint8(1))
	f.Add([]byte("{\"text\":\"\xc3\"}\n"), uint8(1))
	f.Add([]byte("{\"text\":3}\n"), uint8(1))
	f.Add([]byte("[1,2]\n"), uint8(1))
	f.Add(pq.Bytes(), uint8(2))
	f.Add(pq.Bytes()[:pq.Len()/2], uint8(2))
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"), uint8(2))
	exts := []string{".txt", ".jsonl", ".parquet"}
	f.Fuzz(func(t *testing.T, b []byte, kind uint8) {
		path := filepath.Join(t.TempDir(), "in"+exts[int(kind)%len(exts)])
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		docs, err := ReadTexts(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		} else {
			for i, d := range docs {
				if !utf8.ValidString(d) {
					t.Fatalf("document %d is not valid UTF-8: %q", i, d)
				}
			}
		}
		if kind%3 != 0 {
			if _, _, err := ReadRows(path); err != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadRows error does not name the file: %v", err)
			}
		}
	})
}
