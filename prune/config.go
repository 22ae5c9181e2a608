package prune

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// LevelConfig assigns a database level to every prunable module, in the
// reference's file order: all mlp.down_proj modules of layers 0..L-1, then
// all self_attn.o_proj modules (paper-notes b.5). A module's index in Names
// is the module index used by (*Database).NumLevels and HasLevel.
type LevelConfig struct {
	Names  []string
	Levels []int
}

// Clone returns a deep copy.
func (c LevelConfig) Clone() LevelConfig {
	return LevelConfig{Names: append([]string(nil), c.Names...), Levels: append([]int(nil), c.Levels...)}
}

// String renders the reference format: one "NAME: LEVEL" line per module,
// lines separated by "\n", no trailing newline.
func (c LevelConfig) String() string {
	var b strings.Builder
	for i, n := range c.Names {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s: %d", n, c.Levels[i])
	}
	return b.String()
}

// Write stores the configuration atomically at path in the reference format.
func (c LevelConfig) Write(path string) error {
	if len(c.Names) != len(c.Levels) {
		return fmt.Errorf("level config %s: %d names but %d levels", path, len(c.Names), len(c.Levels))
	}
	return atomicfile.WriteFile(path, []byte(c.String()))
}

// ParseLevelConfig reads "NAME: LEVEL" lines (whitespace around both parts
// tolerated, blank lines and lines starting with # skipped). It checks the
// syntax and duplicates only; (*Database).Check validates the names and
// levels against a database. name is used in errors.
func ParseLevelConfig(r io.Reader, name string) (LevelConfig, error) {
	var c LevelConfig
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ln := 0
	for sc.Scan() {
		ln++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ':')
		if i < 0 {
			return LevelConfig{}, fmt.Errorf("%s:%d: want \"MODULE: LEVEL\", got %q", name, ln, line)
		}
		mod := strings.TrimSpace(line[:i])
		lv, err := strconv.Atoi(strings.TrimSpace(line[i+1:]))
		if err != nil || mod == "" {
			return LevelConfig{}, fmt.Errorf("%s:%d: want \"MODULE: LEVEL\" with an integer level, got %q", name, ln, line)
		}
		if lv < 0 {
			return LevelConfig{}, fmt.Errorf("%s:%d: level %d of %s is negative", name, ln, lv, mod)
		}
		if prev, dup := seen[mod]; dup {
			return LevelConfig{}, fmt.Errorf("%s:%d: module %s is listed twice (first on line %d)", name, ln, mod, prev)
		}
		seen[mod] = ln
		c.Names = append(c.Names, mod)
		c.Levels = append(c.Levels, lv)
	}
	if err := sc.Err(); err != nil {
		return LevelConfig{}, fmt.Errorf("%s: %w", name, err)
	}
	if len(c.Names) == 0 {
		return LevelConfig{}, fmt.Errorf("%s: no \"MODULE: LEVEL\" lines", name)
	}
	return c, nil
}

// ReadLevelConfig reads a level configuration file.
func ReadLevelConfig(path string) (LevelConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return LevelConfig{}, fmt.Errorf("level config: %w", err)
	}
	defer f.Close()
	return ParseLevelConfig(f, path)
}

// Module names, as Hugging Face spells them.
func mlpName(layer int) string  { return fmt.Sprintf("model.layers.%d.mlp.down_proj", layer) }
func attnName(layer int) string { return fmt.Sprintf("model.layers.%d.self_attn.o_proj", layer) }

// parseModuleName splits a module name into its layer and kind ("attn" or
// "mlp").
func parseModuleName(s string) (layer int, kind string, ok bool) {
	rest, found := strings.CutPrefix(s, "model.layers.")
	if !found {
		return 0, "", false
	}
	num, mod, found := strings.Cut(rest, ".")
	if !found {
		return 0, "", false
	}
	l, err := strconv.Atoi(num)
	if err != nil || l < 0 || strconv.Itoa(l) != num {
		return 0, "", false
	}
	switch mod {
	case "mlp.down_proj":
		return l, "mlp", true
	case "self_attn.o_proj":
		return l, "attn", true
	}
	return l, "", false
}
