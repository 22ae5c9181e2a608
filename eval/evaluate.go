package eval

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
)

//go:embed suites.yaml
var suitesYAML []byte

// TaskSpec selects a task to run.
type TaskSpec struct {
	Task   string `yaml:"task" json:"task"`
	Shots  *int   `yaml:"shots" json:"shots,omitempty"`   // nil: the task's num_fewshot
	Metric string `yaml:"metric" json:"metric,omitempty"` // metric of the suite average
}

// Suite is a named list of tasks.
type Suite struct {
	Description string     `yaml:"description"`
	Tasks       []TaskSpec `yaml:"tasks"`
}

// Suites returns the built-in suites.
func Suites() (map[string]Suite, error) {
	var s map[string]Suite
	if err := yaml.UnmarshalWithOptions(suitesYAML, &s, yaml.DisallowUnknownField()); err != nil {
		return nil, fmt.Errorf("suites.yaml: %v", err)
	}
	return s, nil
}

// PerplexityLM is implemented by scorers that can run perplexity tasks.
type PerplexityLM interface {
	Perplexity(text string, seqLen int) (PPLResult, error)
}

// Options control Evaluate.
type Options struct {
	Limit      int       // documents per task (per subject for MMLU); 0 = all
	NumFewshot *int      // overrides every task's shot count when set
	Rows       RowReader // dataset reader (default ReadRows)
	SeqLen     int       // perplexity window (0: the scorer's default)
	LogSamples io.Writer // JSON lines per document, when set
	// Progress reports the task being scored.
	Progress func(task string)
}

// TaskResult is the result of one task, subtask or group.
type TaskResult struct {
	Task      string
	Alias     string
	Shots     int
	N         int
	Metrics   map[string]float64 // acc, acc_stderr, acc_norm, acc_norm_stderr, ppl
	Order     []string           // metric names in display order
	Truncated int                // requests left-truncated
	Requests  int
	Subtasks  []string
	IsGroup   bool
	Subtask   bool // a member of a group (indented in tables)
	PPL       *PPLResult
	Version   string
	Dataset   string
	Fewshot   string // few-shot source ("" at 0 shots)
	Metric    string // the suite's metric for the average
}

// Report is the outcome of Evaluate.
type Report struct {
	Results []*TaskResult
	Average *float64 // unweighted mean of the suite metric, percent
}

// Evaluate runs the tasks.
func Evaluate(lm LM, reg *Registry, specs []TaskSpec, o Options) (*Report, error) {
	if o.Limit < 0 {
		return nil, fmt.Errorf("--limit must be positive")
	}
	rep := &Report{}
	var avg []float64
	for _, sp := range specs {
		t, subset, err := reg.Get(sp.Task)
		if err != nil {
			return nil, err
		}
		if o.Progress != nil {
			o.Progress(sp.Task)
		}
		var rs []*TaskResult
		if t.IsPerplexity() {
			r, err := runPerplexity(lm, t, o)
			if err != nil {
				return nil, err
			}
			rs = []*TaskResult{r}
		} else {
			shots := t.Cfg.NumFewshot
			if sp.Shots != nil {
				shots = *sp.Shots
			}
			if o.NumFewshot != nil {
				shots = *o.NumFewshot
			}
			rs, err = runMC(lm, t, subset, shots, o)
			if err != nil {
				return nil, err
			}
		}
		if sp.Metric != "" {
			rs[0].Metric = sp.Metric
			v, ok := rs[0].Metrics[sp.Metric]
			if !ok {
				return nil, fmt.Errorf("task %s has no metric %s", sp.Task, sp.Metric)
			}
			if sp.Metric != "ppl" {
				avg = append(avg, 100*v)
			}
		}
		rep.Results = append(rep.Results, rs...)
	}
	if len(avg) > 0 && len(avg) == len(specs) {
		s := 0.0
		for _, v := range avg {
			s += v
		}
		a := s / float64(len(avg))
		rep.Average = &a
	}
	return rep, nil
}

func runPerplexity(lm LM, t *Task, o Options) (*TaskResult, error) {
	pl, ok := lm.(PerplexityLM)
	if !ok {
		return nil, fmt.Errorf("task %s: the scorer cannot compute perplexity", t.Name())
	}
	read := o.Rows
	if read == nil {
		read = ReadRows
	}
	cols, rows, path, err := read(t.TestSpec())
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", t.Name(), err)
	}
	if !containsStr(cols, t.Cfg.Column) {
		return nil, fmt.Errorf("task %s: dataset %s has no column %q (its columns: %s)", t.Name(), path, t.Cfg.Column, strings.Join(cols, ", "))
	}
	if o.Limit > 0 && o.Limit < len(rows) {
		rows = rows[:o.Limit]
	}
	texts := make([]string, len(rows))
	for i, r := range rows {
		s, ok := r[t.Cfg.Column].(string)
		if !ok {
			return nil, fmt.Errorf("task %s: %s row %d: column %q is %T, want string", t.Name(), path, i, t.Cfg.Column, r[t.Cfg.Column])
		}
		texts[i] = s
	}
	j := "\n\n"
	if t.Cfg.Joiner != nil {
		j = *t.Cfg.Joiner
	}
	p, err := pl.Perplexity(strings.Join(texts, j), o.SeqLen)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", t.Name(), err)
	}
	return &TaskResult{Task: t.Name(), Alias: t.Name(), N: len(rows), PPL: &p, Dataset: t.TestSpec(),
		Metrics: map[string]float64{"ppl": p.PPL}, Order: []string{"ppl"}}, nil
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// docScore is one scored document.
type docScore struct {
	inst         Instance
	lls          []float64
	pred, predN  int
	acc, accNorm float64
	truncated    int
}

func runMC(lm LM, t *Task, subset string, shots int, o Options) ([]*TaskResult, error) {
	insts, err := t.Build(BuildOptions{Limit: o.Limit, NumFewshot: shots, Subset: subset, Rows: o.Rows})
	if err != nil {
		return nil, err
	}
	var reqs []Request
	for i, in := range insts {
		for c := range in.Contexts {
			reqs = append(reqs, Request{Context: in.Contexts[c], Continuation: in.Conts[c], Group: i})
		}
	}
	res, err := lm.Loglikelihoods(reqs)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", t.Name(), err)
	}
	if len(res) != len(reqs) {
		return nil, fmt.Errorf("task %s: scorer returned %d results for %d requests", t.Name(), len(res), len(reqs))
	}
	scores := make([]docScore, len(insts))
	k := 0
	for i, in := range insts {
		d := docScore{inst: in}
		for range in.Contexts {
			d.lls = append(d.lls, res[k].LL)
			if res[k].Truncated {
				d.truncated++
			}
			k++
		}
		d.pred, d.predN = Predict(d.lls, in.Choices)
		if d.pred == in.Gold {
			d.acc = 1
		}
		if d.predN == in.Gold {
			d.accNorm = 1
		}
		scores[i] = d
	}
	if o.LogSamples != nil {
		if err := logSamples(o.LogSamples, t.Name(), scores); err != nil {
			return nil, err
		}
	}
	name := t.Name()
	if subset != "" {
		name = t.Name() + "_" + subset
	}
	fewshot := ""
	if shots > 0 {
		fewshot = t.FewshotSpec() + " (" + sampler(t) + ")"
	}
	mk := func(task string, ds []docScore) *TaskResult {
		r := &TaskResult{Task: task, Alias: task, Shots: shots, N: len(ds), Metrics: map[string]float64{},
			Version: t.Cfg.Version, Dataset: t.TestSpec(), Fewshot: fewshot}
		for _, m := range t.Cfg.Metrics {
			xs := make([]float64, len(ds))
			for i, d := range ds {
				if m == "acc" {
					xs[i] = d.acc
				} else {
					xs[i] = d.accNorm
				}
			}
			mean, se := MeanStderr(xs)
			r.Metrics[m], r.Metrics[m+"_stderr"] = mean, se
			r.Order = append(r.Order, m)
		}
		for _, d := range ds {
			r.Truncated += d.truncated
			r.Requests += len(d.lls)
		}
		return r
	}
	if t.Cfg.GroupBy == "" || subset != "" {
		return []*TaskResult{mk(name, scores)}, nil
	}
	// Group: micro-average over all documents, then one entry per subtask.
	byGroup := map[string][]docScore{}
	var groups []string
	for _, d := range scores {
		if _, ok := byGroup[d.inst.Group]; !ok {
			groups = append(groups, d.inst.Group)
		}
		byGroup[d.inst.Group] = append(byGroup[d.inst.Group], d)
	}
	sort.Strings(groups)
	top := mk(name, scores)
	top.IsGroup = true
	out := []*TaskResult{top}
	var ses, sizes []float64
	for _, g := range groups {
		r := mk(name+"_"+g, byGroup[g])
		r.Alias = " - " + name + "_" + g
		r.Subtask = true
		top.Subtasks = append(top.Subtasks, r.Task)
		out = append(out, r)
		ses = append(ses, r.Metrics["acc_stderr"])
		sizes = append(sizes, float64(r.N))
	}
	for _, m := range t.Cfg.Metrics {
		var s []float64
		for _, r := range out[1:] {
			s = append(s, r.Metrics[m+"_stderr"])
		}
		top.Metrics[m+"_stderr"] = PooledStderr(s, sizes)
	}
	_ = ses
	return out, nil
}

func sampler(t *Task) string {
	if t.Cfg.FewshotSampler == "first_n" {
		return "first_n"
	}
	s := 1234
	if t.Cfg.FewshotSeed != nil {
		s = *t.Cfg.FewshotSeed
	}
	return fmt.Sprintf("python random.Random(%d).sample", s)
}

// Predict returns argmax(lls) and argmax(lls / len(choice in code points)),
// the first maximum on ties (numpy.argmax).
func Predict(lls []float64, choices []string) (pred, predNorm int) {
	best, bestN := math.Inf(-1), math.Inf(-1)
	pred, predNorm = -1, -1
	for i, ll := range lls {
		if pred < 0 || ll > best {
			best, pred = ll, i
		}
		n := ll
		if i < len(choices) {
			n = ll / float64(utf8.RuneCountInString(choices[i]))
		}
		if predNorm < 0 || n > bestN {
			bestN, predNorm = n, i
		}
	}
	return pred, predNorm
}

// MeanStderr returns the mean and lm-eval's stderr: the sample standard
// deviation (n−1) over √n; NaN for fewer than two values.
func MeanStderr(xs []float64) (mean, stderr float64) {
	n := float64(len(xs))
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= n
	if len(xs) < 2 {
		return mean, math.NaN()
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss/(n-1)) / math.Sqrt(n)
}

// PooledStderr is lm-eval's pooled_sample_stderr for group results.
func PooledStderr(stderrs, sizes []float64) float64 {
	var num, tot float64
	for i, s := range stderrs {
		num += (sizes[i] - 1) * s * s * sizes[i]
		tot += sizes[i]
	}
	v := num / (tot - float64(len(sizes)))
	return math.Sqrt(v / tot)
}

type sampleLine struct {
	Task           string    `json:"task"`
	DocID          int       `json:"doc_id"`
	Contexts       []string  `json:"contexts"`
	Continuations  []string  `json:"continuations"`
	Loglikelihoods []float64 `json:"loglikelihoods"`
	Gold           int       `json:"gold"`
	Pred           int       `json:"pred"`
	PredNorm       int       `json:"pred_norm"`
	Group          string    `json:"group,omitempty"`
	Truncated      int       `json:"truncated,omitempty"`
}

func logSamples(w io.Writer, task string, ds []docScore) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, d := range ds {
		name := task
		if d.inst.Group != "" {
			name = task + "_" + d.inst.Group
		}
		if err := enc.Encode(sampleLine{Task: name, DocID: d.inst.DocID, Contexts: d.inst.Contexts, Continuations: d.inst.Conts,
			Loglikelihoods: d.lls, Gold: d.inst.Gold, Pred: d.pred, PredNorm: d.predN, Group: d.inst.Group, Truncated: d.truncated}); err != nil {
			return err
		}
	}
	return nil
}
