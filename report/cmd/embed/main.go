// Command embed puts rendered experiment reports into a Markdown document
// between <!-- BEGIN name --> / <!-- END name --> markers (make paper).
//
//	go run ./report/cmd/embed DOC.md results/table2/local/table2-local.md ...
package main

import (
	"fmt"
	"os"

	"github.com/darwinlm/darwinlm-go/report"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: embed DOC.md PART.md...")
		os.Exit(2)
	}
	if err := report.Embed(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}
