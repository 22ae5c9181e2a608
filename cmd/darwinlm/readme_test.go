package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/darwinlm/darwinlm-go/hub"
)

// The README's command blocks must run verbatim on a fresh clone. This test
// parses whatever README.md holds at test time:
//
//   - every ```sh (or ```bash, ```shell) block is a command block;
//   - a block preceded by an HTML comment <!-- slow --> (blank lines may sit
//     between them; text may follow "slow", e.g. <!-- slow: 40 min -->) is
//     checked but not run, unless DARWINLM_README_SLOW=1;
//   - every block must spell the binary bin/darwinlm, write its outputs
//     under results/ or a temporary folder, and may run `make test` only if
//     it is marked slow (the test would run itself);
//   - the other blocks run with bash -e from a sandbox of the repository
//     (its files linked, bin/ holding the binary under test, an empty
//     results/), with budgets made small where a flag allows (see
//     shrinkBlock), offline, with the hub mirror of the test.

type readmeBlock struct {
	line int // 1-based line of the opening fence
	slow bool
	text string
}

var (
	fenceOpen = regexp.MustCompile("^```(sh|bash|shell|console)\\s*$")
	slowMark  = regexp.MustCompile(`<!--\s*slow\b`)
)

// parseReadme returns the command blocks of a README.
func parseReadme(src string) ([]readmeBlock, error) {
	lines := strings.Split(src, "\n")
	var blocks []readmeBlock
	lastText := "" // the last non-blank line outside a block
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], "\r")
		if strings.HasPrefix(l, "```") {
			open := i
			var body []string
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				body = append(body, strings.TrimRight(lines[i], "\r"))
			}
			if i == len(lines) {
				return nil, fmt.Errorf("README.md:%d: code block is not closed", open+1)
			}
			if fenceOpen.MatchString(l) {
				blocks = append(blocks, readmeBlock{line: open + 1, slow: slowMark.MatchString(lastText), text: strings.Join(body, "\n")})
			}
			lastText = l
			continue
		}
		if strings.TrimSpace(l) != "" {
			lastText = l
		}
	}
	return blocks, nil
}

var (
	bareBinary = regexp.MustCompile(`(^|[\s;&|(])darwinlm(\s|$)`)
	outputFlag = regexp.MustCompile(`(?:^|\s)(--out|--log-samples|--cpuprofile|-o)(?:\s+|=)(\S+)`)
	makeTest   = regexp.MustCompile(`(^|[\s;&|(])make\s+test(\s|$)`)
)

// checkBlock returns the README rules a block breaks.
func checkBlock(b readmeBlock) []string {
	var errs []string
	for i, l := range strings.Split(b.text, "\n") {
		code, _, _ := strings.Cut(l, "#")
		where := fmt.Sprintf("README.md:%d", b.line+1+i)
		if bareBinary.MatchString(code) {
			errs = append(errs, where+": spell the binary bin/darwinlm (what make build writes), not darwinlm")
		}
		for _, m := range outputFlag.FindAllStringSubmatch(code, -1) {
			v := strings.Trim(m[2], `'"`)
			if !(strings.HasPrefix(v, "results/") || strings.HasPrefix(v, "$") || strings.HasPrefix(v, "/tmp/") || strings.HasPrefix(v, "bin/")) {
				errs = append(errs, fmt.Sprintf("%s: %s %s writes into the repository; use results/... or a temporary folder", where, m[1], m[2]))
			}
		}
		if makeTest.MatchString(code) && !b.slow {
			errs = append(errs, where+": a block running make test must be marked <!-- slow --> (the test would run itself)")
		}
	}
	return errs
}

// shrinkBlock makes a block's work small where a flag allows, keeping every
// command as written otherwise: few documents of every text input, few
// evaluation documents, one training step, few generated tokens.
func shrinkBlock(s string) string {
	set := func(flag, val string) {
		re := regexp.MustCompile(`(` + regexp.QuoteMeta(flag) + `)(\s+|=)\d[\d_]*(\s|$)`)
		s = re.ReplaceAllString(s, "${1}${2}"+val+"${3}")
	}
	set("--limit", "3")
	set("--tokens", "1")
	set("--steps", "1")
	set("--max-tokens", "16")
	// Every eval without --limit (and not --list) gets one.
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.Contains(l, "bin/darwinlm eval") && !strings.Contains(l, "--limit") && !strings.Contains(l, "--list") {
			lines[i] = strings.Replace(l, "bin/darwinlm eval", "bin/darwinlm eval --limit 3", 1)
		}
	}
	s = strings.Join(lines, "\n")
	// Text inputs: at most 20 documents.
	re := regexp.MustCompile(`(--text-file|--data)(\s+|=)('[^']*'|"[^"]*"|\S+)`)
	return re.ReplaceAllStringFunc(s, func(m string) string {
		sm := re.FindStringSubmatch(m)
		spec := strings.Trim(sm[3], `'"`)
		base, lo, hi := spec, 0, -1
		if r := regexp.MustCompile(`^(.*)\[(\d*):(\d*)\]$`).FindStringSubmatch(spec); r != nil {
			base = r[1]
			lo, _ = strconv.Atoi(r[2])
			if r[3] != "" {
				hi, _ = strconv.Atoi(r[3])
			}
		}
		if hi < 0 || hi > lo+20 {
			hi = lo + 20
		}
		return fmt.Sprintf("%s%s'%s[%d:%d]'", sm[1], sm[2], base, lo, hi)
	})
}

func TestReadmeParserAndRules(t *testing.T) {
	src := "intro\n\n```sh\nmake demo\n```\n\n<!-- slow: minutes -->\n\n```sh\nmake test\nmake bench\n```\n" +
		"text\n```go\nfmt.Println()\n```\n```bash\ndarwinlm ppl --out results.json # darwinlm\n```\n" +
		"```sh\nmake test\n```\n"
	blocks, err := parseReadme(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 4 || blocks[0].slow || !blocks[1].slow || blocks[2].slow || blocks[3].slow ||
		blocks[0].line != 3 || blocks[1].text != "make test\nmake bench" {
		t.Fatalf("blocks: %+v", blocks)
	}
	if e := checkBlock(blocks[0]); len(e) != 0 {
		t.Errorf("clean block: %v", e)
	}
	if e := checkBlock(blocks[1]); len(e) != 0 {
		t.Errorf("slow make test: %v", e)
	}
	e := checkBlock(blocks[2])
	if len(e) != 2 || !strings.Contains(e[0], "README.md:18: spell the binary bin/darwinlm") || !strings.Contains(e[1], "--out results.json") {
		t.Errorf("bad block: %v", e)
	}
	if e := checkBlock(blocks[3]); len(e) != 1 || !strings.Contains(e[0], "make test") {
		t.Errorf("make test unmarked: %v", e)
	}
	if _, err := parseReadme("```sh\nls\n"); err == nil {
		t.Error("unclosed block accepted")
	}
	got := shrinkBlock("bin/darwinlm eval --suite paper --limit 200 --out results/e.json\n" +
		"bin/darwinlm train --data 'hf-dataset:a/b/c/d[:3000]' --tokens 100000 --out results/r\n" +
		"bin/darwinlm ppl --text-file 'hf-dataset:a/b/c/d[3300:]' --seq-len 256\n" +
		"bin/darwinlm ppl --text-file=x.txt --max-tokens 500")
	want := "bin/darwinlm eval --suite paper --limit 3 --out results/e.json\n" +
		"bin/darwinlm train --data 'hf-dataset:a/b/c/d[0:20]' --tokens 1 --out results/r\n" +
		"bin/darwinlm ppl --text-file 'hf-dataset:a/b/c/d[3300:3320]' --seq-len 256\n" +
		"bin/darwinlm ppl --text-file='x.txt[0:20]' --max-tokens 16"
	if got != want {
		t.Errorf("shrinkBlock:\n%s\nwant\n%s", got, want)
	}
	if got := shrinkBlock("bin/darwinlm eval --tasks piqa"); got != "bin/darwinlm eval --limit 3 --tasks piqa" {
		t.Errorf("eval without --limit: %q", got)
	}
}

// TestReadmeCommands runs the README's command blocks (see the top of this
// file for the rules and the <!-- slow --> marker).
func TestReadmeCommands(t *testing.T) {
	needMirror(t)
	if testing.Short() {
		t.Skip("-short")
	}
	root := hub.ModuleRoot()
	src, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseReadme(string(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```sh blocks")
	}
	for _, b := range blocks {
		for _, e := range checkBlock(b) {
			t.Error(e)
		}
	}
	if t.Failed() {
		return
	}
	slow := os.Getenv("DARWINLM_README_SLOW") == "1"
	timeout := 5 * time.Minute
	if v, err := time.ParseDuration(os.Getenv("DARWINLM_README_TIMEOUT")); err == nil {
		timeout = v
	}
	sandbox := readmeSandbox(t, root)
	env := mergeEnv(os.Environ(), []string{"DARWINLM_HUB_MIRROR=" + hub.Mirror(), "DARWINLM_OFFLINE=1", "HF_HOME=" + t.TempDir()})
	for _, b := range blocks {
		name := fmt.Sprintf("README.md:%d", b.line)
		t.Run(name, func(t *testing.T) {
			if b.slow && !slow {
				t.Skip("marked <!-- slow --> (DARWINLM_README_SLOW=1 runs it)")
			}
			if makeTest.MatchString(b.text) {
				t.Skip("runs make test, which would run this test")
			}
			script := shrinkBlock(b.text)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
			cmd.Dir, cmd.Env = sandbox, env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%s: still running after %v; mark the block <!-- slow --> or lower its budget\n%s", name, timeout, script)
			}
			if err != nil {
				o := out.String()
				if len(o) > 4000 {
					o = "..." + o[len(o)-4000:]
				}
				t.Fatalf("%s: %v\nscript (budgets shrunk):\n%s\noutput:\n%s", name, err, script, o)
			}
			t.Logf("%s: ok in %.1fs", name, time.Since(start).Seconds())
		})
	}
}

// readmeSandbox is a folder that looks like the repository to a README
// command: every top-level entry linked, except bin/ (the binary under test)
// and results/ (empty, so outputs land in the sandbox).
func readmeSandbox(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch e.Name() {
		case "bin", "results", ".git":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "results"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "darwinlm"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
