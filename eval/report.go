package eval

import (
	"fmt"
	"io"
	"math"

	"github.com/olekukonko/tablewriter"
)

// Perplexity implements PerplexityLM (seqLen 0: min(model max, 2048)).
func (lm *ModelLM) Perplexity(text string, seqLen int) (PPLResult, error) {
	var pr func(int, int)
	if lm.Progress != nil {
		pr = lm.Progress
	}
	return Perplexity(lm.M, lm.Be, lm.Tok, text, seqLen, pr)
}

// jsonNum is lm-eval's rendering of a metric: NaN (stderr of one sample)
// becomes "N/A".
func jsonNum(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "N/A"
	}
	return v
}

// JSON returns the report in lm-eval's results layout: results, groups,
// group_subtasks, n-shot, n-samples, versions, config (given), plus darwinlm
// extras (truncation counts, the suite average, perplexity details).
func (r *Report) JSON(config map[string]any) map[string]any {
	results := map[string]any{}
	groups := map[string]any{}
	groupSub := map[string]any{}
	nshot := map[string]any{}
	nsamp := map[string]any{}
	versions := map[string]any{}
	trunc := map[string]any{}
	paperMetric := map[string]any{}
	ppl := map[string]any{}
	for _, t := range r.Results {
		e := map[string]any{"alias": t.Alias}
		for _, m := range t.Order {
			e[m+",none"] = jsonNum(t.Metrics[m])
			if se, ok := t.Metrics[m+"_stderr"]; ok {
				e[m+"_stderr,none"] = jsonNum(se)
			}
		}
		results[t.Task] = e
		if t.IsGroup {
			groups[t.Task] = e
			groupSub[t.Task] = t.Subtasks
		}
		if t.PPL != nil {
			ppl[t.Task] = t.PPL
		} else {
			nshot[t.Task] = t.Shots
			trunc[t.Task] = map[string]any{"truncated_requests": t.Truncated, "requests": t.Requests}
		}
		nsamp[t.Task] = map[string]any{"effective": t.N}
		if t.Version != "" {
			versions[t.Task] = t.Version
		}
		if t.Metric != "" {
			paperMetric[t.Task] = t.Metric
		}
	}
	out := map[string]any{
		"results": results, "n-shot": nshot, "n-samples": nsamp, "versions": versions, "config": config,
	}
	if len(groups) > 0 {
		out["groups"] = groups
		out["group_subtasks"] = groupSub
	}
	extra := map[string]any{"truncation": trunc}
	if r.Average != nil {
		extra["average"] = *r.Average
		extra["average_metrics"] = paperMetric
	}
	if len(ppl) > 0 {
		extra["perplexity"] = ppl
	}
	out["darwinlm"] = extra
	return out
}

// WriteTable renders the report as a table; subtasks are listed only when
// withSubtasks is set.
func (r *Report) WriteTable(w io.Writer, withSubtasks bool) error {
	tb := tablewriter.NewWriter(w)
	tb.Header("Task", "Shots", "N", "Metric", "Value", "Stderr", "Truncated")
	f := func(v float64, pct bool) string {
		if math.IsNaN(v) {
			return "N/A"
		}
		if pct {
			return fmt.Sprintf("%.2f", 100*v)
		}
		return fmt.Sprintf("%.4f", v)
	}
	for _, t := range r.Results {
		if t.Subtask && !withSubtasks {
			continue
		}
		name := t.Alias
		if t.Metric != "" {
			name += " *"
		}
		for i, m := range t.Order {
			shots, n, tr := fmt.Sprint(t.Shots), fmt.Sprint(t.N), fmt.Sprintf("%d/%d", t.Truncated, t.Requests)
			if t.PPL != nil {
				shots, tr = "-", "-"
				n = fmt.Sprintf("%d tok", t.PPL.Scored)
			}
			if i > 0 {
				name, shots, n, tr = "", "", "", ""
			}
			mname, pct := m, true
			se := ""
			if m == "ppl" {
				pct = false
			} else {
				mname += " (%)"
				se = f(t.Metrics[m+"_stderr"], true)
			}
			if m == t.Metric {
				mname += " *"
			}
			if err := tb.Append(name, shots, n, mname, f(t.Metrics[m], pct), se, tr); err != nil {
				return err
			}
		}
	}
	if r.Average != nil {
		if err := tb.Append("Average (* metrics)", "", "", "", fmt.Sprintf("%.2f", *r.Average), "", ""); err != nil {
			return err
		}
	}
	return tb.Render()
}
