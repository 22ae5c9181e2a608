// Command gen compiles the shaders listed in shaders.Programs with
// glslangValidator; run it through `go generate ./shaders`.
package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/darwinlm/darwinlm-go/shaders"
)

func main() {
	if _, err := exec.LookPath("glslangValidator"); err != nil {
		fmt.Fprintln(os.Stderr, "gen: glslangValidator not found (apt-get install glslang-tools)")
		os.Exit(1)
	}
	for _, p := range shaders.Programs {
		if p.Skip != "" {
			fmt.Fprintf(os.Stderr, "gen: skip %s: %s\n", p.Name, p.Skip)
			continue
		}
		cmd := exec.Command("glslangValidator", p.Args(p.Name+".spv")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "gen: %s: %v\n%s", p.Name, err, out)
			os.Exit(1)
		}
	}
}
