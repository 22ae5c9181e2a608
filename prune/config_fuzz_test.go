package prune

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseLevelConfig: the parser never panics, and whatever it accepts
// renders (String, the reference format) to text it parses back to the
// same configuration.
func FuzzParseLevelConfig(f *testing.F) {
	for _, s := range []string{
		"model.layers.0.mlp.down_proj: 5\nmodel.layers.0.self_attn.o_proj: 5",
		"  model.layers.1.mlp.down_proj :7 \r\n# comment\n\nmodel.layers.1.self_attn.o_proj:0\n",
		"model.layers.0.mlp.down_proj: 5\nmodel.layers.0.mlp.down_proj: 6",
		"a:b:3",
		"model.layers.0.mlp.down_proj: -1",
		"model.layers.0.mlp.down_proj: 99999999999999999999",
		"no colon here",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseLevelConfig(strings.NewReader(text), "fuzz.txt")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.txt") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(c.Names) == 0 || len(c.Names) != len(c.Levels) {
			t.Fatalf("accepted %d names and %d levels", len(c.Names), len(c.Levels))
		}
		back, err := ParseLevelConfig(strings.NewReader(c.String()), "again.txt")
		if err != nil {
			t.Fatalf("rendered config does not parse: %v\n%q", err, c.String())
		}
		if !slices.Equal(back.Names, c.Names) || !slices.Equal(back.Levels, c.Levels) {
			t.Fatalf("round trip changed the config: %v -> %v", c, back)
		}
	})
}
