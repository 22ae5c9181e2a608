// Package report renders an experiment's tables and figures from its Parquet
// results alone (it never loads a model): our rows beside the paper's (read
// from the experiment's paper-reference file and marked as the paper's), as
// Markdown and for the terminal, plus PNG/SVG figures. The output is a
// function of the Parquet files and the spec only; the one date it prints
// comes from the files' metadata, so rendering twice gives the same bytes.
package report

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/darwinlm/darwinlm-go/experiment"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
)

// Options choose the outputs.
type Options struct {
	Terminal io.Writer // the table for the terminal (nil: none)
	OutDir   string    // Markdown and figures go here ("" = none)
}

// Table is the rendered content before formatting.
type Table struct {
	Header []string
	Rows   [][]string
	Notes  []string // not-run reasons and remarks, in row order
}

// Build makes the table of one profile's results.
func Build(s *experiment.Spec, res *experiment.Results, paper []PaperRow) *Table {
	cols := s.Table.Columns
	t := &Table{Header: append([]string{"source", "method", "group"}, cols...)}
	byRow := map[int32][]experiment.ResultRow{}
	var order []int32
	for _, r := range res.Rows {
		if _, ok := byRow[r.Row]; !ok {
			order = append(order, r.Row)
		}
		byRow[r.Row] = append(byRow[r.Row], r)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	prof := res.Meta["profile"]
	// Our post-trained rows name their budget, as the paper's do ("post-trained 10B").
	trained := map[string]int64{}
	for _, tr := range res.Train {
		trained[tr.Stage] = max(trained[tr.Stage], tr.Tokens)
	}
	for _, i := range order {
		rs := byRow[i]
		r0 := rs[0]
		group := r0.Group
		if n := trained[r0.Stage]; n > 0 && !strings.Contains(group, "one-shot") {
			group += " " + FormatParams(n)
		}
		line := []string{"ours (" + prof + ")", r0.Label, group}
		if r0.Status != "done" {
			status := strings.ReplaceAll(r0.Status, "_", " ")
			t.Notes = append(t.Notes, fmt.Sprintf("%s: %s: %s", r0.Label, status, r0.Reason))
			for i := range cols {
				if i == 0 {
					line = append(line, status)
				} else {
					line = append(line, "—")
				}
			}
			t.Rows = append(t.Rows, line)
			continue
		}
		main := map[string]float64{}
		for _, r := range rs {
			if r.Main && r.Value != nil {
				main[r.Task+"/"+r.Metric] = *r.Value
				if r.Task != "heldout" {
					main[r.Task] = *r.Value
				}
			}
		}
		var sum float64
		n, want := 0, 0
		for _, c := range cols {
			if isTask(c) {
				want++
				if v, ok := main[c]; ok {
					sum += 100 * v
					n++
				}
			}
		}
		for _, c := range cols {
			switch c {
			case "params":
				line = append(line, FormatParams(r0.Params))
			case "avg":
				if n > 0 && n == want {
					line = append(line, fmt.Sprintf("%.1f", sum/float64(n)))
				} else {
					line = append(line, "—")
				}
			case "ppl":
				line = append(line, fmtOpt(main, "heldout/ppl", "%.3f", 1))
			case "kl":
				line = append(line, fmtOpt(main, "heldout/kl", "%.4f", 1))
			default:
				line = append(line, fmtOpt(main, c, "%.1f", 100))
			}
		}
		t.Rows = append(t.Rows, line)
	}
	for _, p := range paper {
		line := []string{"paper", p.Method, p.Tokens}
		for _, c := range cols {
			v, ok := p.Values[c]
			if !ok || v == "" {
				v = "—"
			}
			line = append(line, v)
		}
		t.Rows = append(t.Rows, line)
	}
	return t
}

func isTask(c string) bool { return c != "params" && c != "avg" && c != "ppl" && c != "kl" }

func fmtOpt(m map[string]float64, k, f string, scale float64) string {
	v, ok := m[k]
	if !ok || math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf(f, scale*v)
}

// FormatParams prints a parameter count as the paper does (6.7B, 374K).
func FormatParams(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0fK", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}

// PaperRow is one row of the paper's reference file.
type PaperRow struct {
	Method, Tokens string
	Values         map[string]string // column -> printed value ("params", task names, "avg")
}

// ReadPaper reads the rows of the paper's reference csv selected by the spec.
func ReadPaper(s *experiment.Spec) ([]PaperRow, error) {
	if s.Paper.File == "" {
		return nil, nil
	}
	path := filepath.Join(filepath.Dir(s.Path()), s.Paper.File)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: paper.file: %w", s.Path(), err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) < 1 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	hdr := recs[0]
	idx := map[string]int{}
	for i, h := range hdr {
		idx[h] = i
	}
	for _, need := range []string{"table", "model", "method", "params", "post_training_tokens"} {
		if _, ok := idx[need]; !ok {
			return nil, fmt.Errorf("%s: no column %q", path, need)
		}
	}
	var out []PaperRow
	for _, rec := range recs[1:] {
		if rec[idx["table"]] != s.Paper.Table || (s.Paper.Model != "" && rec[idx["model"]] != s.Paper.Model) {
			continue
		}
		tok := rec[idx["post_training_tokens"]]
		if tok == "0" {
			tok = "one-shot"
		} else if tok != "" {
			tok = "post-trained " + tok
		}
		p := PaperRow{Method: rec[idx["method"]], Tokens: tok, Values: map[string]string{}}
		for c, i := range idx {
			p.Values[c] = rec[i]
		}
		out = append(out, p)
	}
	return out, nil
}

// Markdown formats t as a GitHub Markdown table.
func (t *Table) Markdown(w io.Writer) error {
	tb := tablewriter.NewTable(w, tablewriter.WithRenderer(renderer.NewMarkdown()),
		tablewriter.WithHeaderAutoFormat(tw.Off), tablewriter.WithRowAutoWrap(tw.WrapNone))
	return render(tb, t)
}

// Text formats t for the terminal.
func (t *Table) Text(w io.Writer) error {
	tb := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off), tablewriter.WithRowAutoWrap(tw.WrapNone))
	return render(tb, t)
}

func render(tb *tablewriter.Table, t *Table) error {
	tb.Header(toAny(t.Header)...)
	for _, r := range t.Rows {
		if err := tb.Append(toAny(r)...); err != nil {
			return err
		}
	}
	return tb.Render()
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// Render reads results/<experiment>/<profile>, prints the table on
// o.Terminal and, with o.OutDir, writes <name>-<profile>.md and the figures.
func Render(s *experiment.Spec, profile, root string, o Options) error {
	dir := experiment.ResultsDir(root, s, profile)
	res, err := experiment.ReadResults(dir, s)
	if err != nil {
		return err
	}
	paper, err := ReadPaper(s)
	if err != nil {
		return err
	}
	t := Build(s, res, paper)
	if o.Terminal != nil {
		fmt.Fprintf(o.Terminal, "%s (profile %s; ours beside the paper's rows)\n", s.Title, profile)
		if err := t.Text(o.Terminal); err != nil {
			return err
		}
		for _, n := range t.Notes {
			fmt.Fprintln(o.Terminal, "  "+n)
		}
	}
	if o.OutDir == "" {
		return nil
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, s, profile, res, t); err != nil {
		return err
	}
	base := filepath.Join(o.OutDir, s.Name+"-"+profile)
	if err := atomicfile.WriteFile(base+".md", md.Bytes()); err != nil {
		return err
	}
	return Figures(base, res)
}

// WriteMarkdown writes the table, its notes, the stage costs and the run's
// metadata.
func WriteMarkdown(w io.Writer, s *experiment.Spec, profile string, res *experiment.Results, t *Table) error {
	m := res.Meta
	fmt.Fprintf(w, "## %s\n\n", s.Title)
	if s.Table.Caption != "" {
		fmt.Fprintf(w, "%s. ", s.Table.Caption)
	}
	fmt.Fprintf(w, "Profile `%s` of `%s` (version %s), run %s at commit `%s` on %s, backend %s. "+
		"Rows marked `paper` are the paper's published numbers (experiments/%s), not ours. "+
		"Accuracies in percent; ppl and kl (token-mean KL(dense ‖ model)) on held-out text.\n\n",
		profile, m["spec"], m["experiment_version"], m["date"], m["commit"], m["machine"], m["backend"], s.Paper.File)
	if err := t.Markdown(w); err != nil {
		return err
	}
	if len(t.Notes) > 0 || s.Paper.Note != "" {
		fmt.Fprintln(w)
		for _, n := range t.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		if s.Paper.Note != "" {
			fmt.Fprintf(w, "- paper: %s\n", s.Paper.Note)
		}
	}
	fmt.Fprintf(w, "\nStage costs on this machine (seconds when computed; cached stages keep the time of their run):\n\n")
	st := &Table{Header: []string{"stage", "kind", "status", "seconds", "params", "hash"}}
	var total float64
	for _, r := range res.Stages {
		sec := "—"
		if r.Status == "done" {
			sec = fmt.Sprintf("%.1f", r.Seconds)
			total += r.Seconds
		}
		p := ""
		if r.Params > 0 {
			p = FormatParams(r.Params)
		}
		st.Rows = append(st.Rows, []string{r.ID, r.Kind, strings.ReplaceAll(r.Status, "_", " "), sec, p, r.Hash})
	}
	st.Rows = append(st.Rows, []string{"total", "", "", fmt.Sprintf("%.1f", total), "", ""})
	if err := st.Markdown(w); err != nil {
		return err
	}
	if len(res.Search) > 0 {
		fmt.Fprintf(w, "\n![fitness against generation](%s-%s-fitness.svg)\n", s.Name, profile)
	}
	if len(res.Levels) > 0 {
		fmt.Fprintf(w, "\n![per-layer levels](%s-%s-levels.svg)\n", s.Name, profile)
	}
	return nil
}
