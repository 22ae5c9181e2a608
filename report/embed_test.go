package report

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEmbed(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "docs", "paper.md")
	part := filepath.Join(dir, "results", "t2", "t2-local.md")
	os.MkdirAll(filepath.Dir(doc), 0o755)
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(doc, []byte("intro\n<!-- BEGIN t2-local -->\nold\n<!-- END t2-local -->\nend\n"), 0o644)
	os.WriteFile(part, []byte("## T\n![fig](t2-local-fitness.svg)\n"), 0o644)
	for i := 0; i < 2; i++ { // idempotent
		if err := Embed(doc, []string{part}); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(doc)
	want := "intro\n<!-- BEGIN t2-local -->\n### T\n![fig](../results/t2/t2-local-fitness.svg)\n<!-- END t2-local -->\nend\n"
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if err := Embed(doc, []string{filepath.Join(dir, "other.md")}); err == nil {
		t.Fatal("a part without markers was accepted")
	}
}
