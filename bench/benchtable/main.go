// Command benchtable turns `go test -bench` output (stdin) into a table of
// the reported metrics, one row per benchmark. `make bench` pipes into it.
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/olekukonko/tablewriter"
)

func main() {
	type row struct {
		name    string
		metrics map[string]string
	}
	var rows []row
	var units []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(os.Stderr, line) // keep the raw output visible
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		r := row{name: strings.TrimPrefix(f[0], "Benchmark"), metrics: map[string]string{}}
		// f[1] is the iteration count; then value/unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			u := f[i+1]
			if u == "B/op" || u == "allocs/op" {
				continue
			}
			r.metrics[u] = f[i]
			if !slices.Contains(units, u) {
				units = append(units, u)
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines on stdin")
		os.Exit(1)
	}
	t := tablewriter.NewWriter(os.Stdout)
	t.Header(append([]string{"benchmark"}, units...))
	for _, r := range rows {
		cells := []string{r.name}
		for _, u := range units {
			cells = append(cells, r.metrics[u])
		}
		t.Append(cells)
	}
	t.Render()
}
