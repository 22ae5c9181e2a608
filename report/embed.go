package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// Embed replaces, in the Markdown file doc, the text between the markers
// <!-- BEGIN name --> and <!-- END name --> by the content of each part
// (name = the part's file name without .md), with image links rewritten
// relative to doc. A part whose markers are missing is an error; a missing
// part file leaves its block unchanged (that experiment has no results).
func Embed(doc string, parts []string) error {
	b, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	s := string(b)
	for _, p := range parts {
		name := strings.TrimSuffix(filepath.Base(p), ".md")
		begin, end := "<!-- BEGIN "+name+" -->", "<!-- END "+name+" -->"
		i, j := strings.Index(s, begin), strings.Index(s, end)
		if i < 0 || j < i {
			return fmt.Errorf("%s: no %s ... %s block for %s", doc, begin, end, p)
		}
		c, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			return err
		}
		rel, err := filepath.Rel(filepath.Dir(doc), filepath.Dir(p))
		if err != nil {
			return err
		}
		body := strings.ReplaceAll(string(c), "](", "]("+filepath.ToSlash(rel)+"/")
		body = strings.ReplaceAll(body, "## ", "### ")
		s = s[:i+len(begin)] + "\n" + body + s[j:]
	}
	return atomicfile.WriteFile(doc, []byte(s))
}
