package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Load gives the file's bytes (mapped or read), an empty file included, and
// an error naming a missing file.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 4096, 10007} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i*7 + 3)
		}
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, want, 0o644); err != nil {
			t.Fatal(err)
		}
		got, release, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: contents differ", n)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.bin")
	if _, _, err := Load(missing); err == nil || !strings.Contains(err.Error(), "missing.bin") {
		t.Fatalf("missing file: %v", err)
	}
}
