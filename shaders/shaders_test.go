package shaders

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCommittedSPIRV recompiles every source and checks the committed SPIR-V
// is byte-identical (glslangValidator output is deterministic), so a shader
// edited without `go generate ./shaders` fails here.
func TestCommittedSPIRV(t *testing.T) {
	if _, err := exec.LookPath("glslangValidator"); err != nil {
		t.Skip("glslangValidator not installed (glslang-tools)")
	}
	// Other glslang versions emit different (valid) bytes: compare only
	// with the pinned one.
	v, err := exec.Command("glslangValidator", "--version").Output()
	if err != nil || !bytes.Contains(v, []byte(PinnedGlslang)) {
		t.Skipf("glslangValidator is not the pinned %s: %s", PinnedGlslang, bytes.SplitN(v, []byte("\n"), 2)[0])
	}
	dir := t.TempDir()
	for _, p := range Programs {
		if p.Skip != "" {
			if Bytes(p.Name) != nil {
				t.Errorf("%s is marked Skip but has committed SPIR-V", p.Name)
			}
			continue
		}
		out := filepath.Join(dir, p.Name+".spv")
		cmd := exec.Command("glslangValidator", p.Args(out)...)
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", p.Name, err, o)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, Bytes(p.Name)) {
			t.Errorf("%s.spv is stale: run go generate ./shaders", p.Name)
		}
	}
}

func TestEmbedded(t *testing.T) {
	for _, p := range Programs {
		if p.Skip != "" {
			continue
		}
		w, err := SPIRV(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if w[0] != 0x07230203 {
			t.Fatalf("%s: bad magic", p.Name)
		}
	}
	if _, err := SPIRV("nope"); err == nil {
		t.Fatal("missing module: no error")
	}
}
