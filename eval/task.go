package eval

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
)

//go:embed tasks/*.yaml
var embeddedTasks embed.FS

// TaskConfig is one task definition, read from YAML. Field names follow
// lm-evaluation-harness where one exists.
type TaskConfig struct {
	Task string `yaml:"task"`
	// OutputType is "multiple_choice" (default) or "perplexity".
	OutputType string `yaml:"output_type"`
	// Dataset is ORG/NAME/CONFIG in the hub mirror; the evaluated split is
	// hf-dataset:Dataset/TestSplit. TestFile / FewshotFile name local
	// .parquet or .jsonl files instead (relative to the YAML's folder).
	Dataset      string `yaml:"dataset"`
	TestSplit    string `yaml:"test_split"`
	FewshotSplit string `yaml:"fewshot_split"`
	TestFile     string `yaml:"test_file"`
	FewshotFile  string `yaml:"fewshot_file"`
	// Columns are the dataset columns the task reads; a dataset lacking one
	// is refused with an error naming the file and the column.
	Columns []string `yaml:"columns"`
	// Preprocess names a built-in document preprocessor (see Preprocessors).
	Preprocess string `yaml:"preprocess"`

	Description      string  `yaml:"description"`
	DocToText        any     `yaml:"doc_to_text"`
	DocToChoice      any     `yaml:"doc_to_choice"`
	DocToTarget      any     `yaml:"doc_to_target"`
	TargetDelimiter  *string `yaml:"target_delimiter"`
	FewshotDelimiter *string `yaml:"fewshot_delimiter"`
	// MultipleInput: doc_to_text gives the gold index, doc_to_choice one
	// context per option and doc_to_target the shared continuation
	// (WinoGrande's partial scoring).
	MultipleInput bool `yaml:"multiple_input"`

	NumFewshot int `yaml:"num_fewshot"`
	// FewshotSampler: "default" (Python random.Random(seed).sample, as
	// lm-eval) or "first_n".
	FewshotSampler string `yaml:"fewshot_sampler"`
	FewshotSeed    *int   `yaml:"fewshot_seed"`
	// FewshotExtraDraw reproduces lm-eval v0.4.x drawing k+1 examples when
	// fewshot_split == test_split (both unset in piqa, hellaswag,
	// winogrande, boolq) and keeping the first k that are not the document.
	FewshotExtraDraw bool `yaml:"fewshot_extra_draw"`
	// GroupBy splits the rows into subtasks TASK_<value> (MMLU's subject);
	// the few-shot pool of a document is the rows of its own subtask.
	GroupBy string `yaml:"group_by"`

	Metrics []string `yaml:"metric_list"`
	Version string   `yaml:"version"`
	Notes   string   `yaml:"notes"`

	// Perplexity tasks: the Column texts are joined with Joiner.
	Column string  `yaml:"column"`
	Joiner *string `yaml:"joiner"`

	dir string // folder of the YAML file (for local files)
}

// Task is a parsed task definition.
type Task struct {
	Cfg                        TaskConfig
	text, choice, target, desc *Template
	constChoice                []string
	constTarget                any
	pre                        Preprocessor
	targetDelim, fewshotDelim  string
}

// Name is the task's name.
func (t *Task) Name() string { return t.Cfg.Task }

// IsPerplexity reports whether the task is a perplexity suite.
func (t *Task) IsPerplexity() bool { return t.Cfg.OutputType == "perplexity" }

// TestSpec is the dataset spec of the evaluated split.
func (t *Task) TestSpec() string {
	if t.Cfg.TestFile != "" {
		return t.localPath(t.Cfg.TestFile)
	}
	return "hf-dataset:" + t.Cfg.Dataset + "/" + t.Cfg.TestSplit
}

// FewshotSpec is the dataset spec of the few-shot pool ("" if none).
func (t *Task) FewshotSpec() string {
	if t.Cfg.FewshotFile != "" {
		return t.localPath(t.Cfg.FewshotFile)
	}
	if t.Cfg.FewshotSplit == "" {
		return ""
	}
	return "hf-dataset:" + t.Cfg.Dataset + "/" + t.Cfg.FewshotSplit
}

func (t *Task) localPath(p string) string {
	if filepath.IsAbs(p) || t.Cfg.dir == "" {
		return p
	}
	return filepath.Join(t.Cfg.dir, p)
}

// ParseTask parses one YAML task definition.
func ParseTask(data []byte, dir string) (*Task, error) {
	var c TaskConfig
	if err := yaml.UnmarshalWithOptions(data, &c, yaml.DisallowUnknownField()); err != nil {
		return nil, err
	}
	c.dir = dir
	return NewTask(c)
}

// NewTask validates a configuration and compiles its templates.
func NewTask(c TaskConfig) (*Task, error) {
	if c.Task == "" {
		return nil, fmt.Errorf("task definition without a task name")
	}
	t := &Task{Cfg: c, targetDelim: " ", fewshotDelim: "\n\n"}
	if c.TargetDelimiter != nil {
		t.targetDelim = *c.TargetDelimiter
	}
	if c.FewshotDelimiter != nil {
		t.fewshotDelim = *c.FewshotDelimiter
	}
	if c.Dataset == "" && c.TestFile == "" {
		return nil, fmt.Errorf("task %s: dataset (or test_file) is required", c.Task)
	}
	if c.Dataset != "" && c.TestFile == "" && (c.TestSplit == "" || strings.Count(c.Dataset, "/") < 1 || strings.Count(c.Dataset, "/") > 2) {
		return nil, fmt.Errorf("task %s: dataset must be [ORG/]NAME/CONFIG and test_split set", c.Task)
	}
	if c.NumFewshot < 0 {
		return nil, fmt.Errorf("task %s: num_fewshot must be >= 0", c.Task)
	}
	switch c.FewshotSampler {
	case "", "default", "first_n":
	default:
		return nil, fmt.Errorf("task %s: unknown fewshot_sampler %q (default, first_n)", c.Task, c.FewshotSampler)
	}
	if c.Preprocess != "" {
		p, ok := Preprocessors[c.Preprocess]
		if !ok {
			return nil, fmt.Errorf("task %s: unknown preprocess %q (known: %s)", c.Task, c.Preprocess, strings.Join(preprocessorNames(), ", "))
		}
		t.pre = p
	}
	var err error
	switch c.OutputType {
	case "perplexity":
		if c.Column == "" {
			return nil, fmt.Errorf("task %s: perplexity tasks need column", c.Task)
		}
		return t, nil
	case "", "multiple_choice":
		t.Cfg.OutputType = "multiple_choice"
	default:
		return nil, fmt.Errorf("task %s: unknown output_type %q", c.Task, c.OutputType)
	}
	if t.text, err = compileField(c.DocToText); err != nil || t.text == nil {
		return nil, fmt.Errorf("task %s: doc_to_text: %v", c.Task, orMissing(err))
	}
	switch v := c.DocToChoice.(type) {
	case []any:
		for _, x := range v {
			t.constChoice = append(t.constChoice, toText(x))
		}
	default:
		if t.choice, err = compileField(v); err != nil || t.choice == nil {
			return nil, fmt.Errorf("task %s: doc_to_choice: %v", c.Task, orMissing(err))
		}
	}
	switch v := c.DocToTarget.(type) {
	case int, int64, uint64:
		t.constTarget = v
	default:
		if t.target, err = compileField(v); err != nil || t.target == nil {
			return nil, fmt.Errorf("task %s: doc_to_target: %v", c.Task, orMissing(err))
		}
	}
	if c.Description != "" {
		if t.desc, err = ParseTemplate(c.Description); err != nil {
			return nil, fmt.Errorf("task %s: description: %v", c.Task, err)
		}
	}
	for _, m := range c.Metrics {
		if m != "acc" && m != "acc_norm" {
			return nil, fmt.Errorf("task %s: unknown metric %q (acc, acc_norm)", c.Task, m)
		}
	}
	if len(t.Cfg.Metrics) == 0 {
		t.Cfg.Metrics = []string{"acc", "acc_norm"}
	}
	return t, nil
}

func orMissing(err error) error {
	if err == nil {
		return fmt.Errorf("missing")
	}
	return err
}

// compileField turns a doc_to_* value into a template. A bare identifier is
// a field name (lm-eval uses doc[field] when the string is a feature name);
// anything else is a template.
func compileField(v any) (*Template, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if isIdent(x) {
			return ParseTemplate("{{" + x + "}}")
		}
		return ParseTemplate(x)
	}
	return nil, fmt.Errorf("unsupported value %v (%T)", v, v)
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Registry holds the known tasks by name.
type Registry struct {
	tasks map[string]*Task
}

// LoadRegistry loads the embedded task definitions, then those of dir (if
// not empty), which override embedded ones of the same name.
func LoadRegistry(dir string) (*Registry, error) {
	r := &Registry{tasks: map[string]*Task{}}
	ents, err := fs.ReadDir(embeddedTasks, "tasks")
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		b, err := embeddedTasks.ReadFile("tasks/" + e.Name())
		if err != nil {
			return nil, err
		}
		if err := r.add(b, "", "embedded tasks/"+e.Name()); err != nil {
			return nil, err
		}
	}
	if dir != "" {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return nil, err
		}
		more, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		files = append(files, more...)
		if len(files) == 0 {
			return nil, fmt.Errorf("task dir %s: no .yaml files", dir)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if err := r.add(b, filepath.Dir(f), f); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

func (r *Registry) add(b []byte, dir, name string) error {
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		t, err := ParseTask(doc, dir)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		r.tasks[t.Name()] = t
	}
	return nil
}

// Names lists the known task names, sorted.
func (r *Registry) Names() []string {
	var out []string
	for n := range r.tasks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns a task by name. For a task with group_by, NAME_VALUE selects
// the subtask (e.g. mmlu_abstract_algebra); Subset is then set.
func (r *Registry) Get(name string) (*Task, string, error) {
	if t, ok := r.tasks[name]; ok {
		return t, "", nil
	}
	for n, t := range r.tasks {
		if t.Cfg.GroupBy != "" && strings.HasPrefix(name, n+"_") {
			return t, strings.TrimPrefix(name, n+"_"), nil
		}
	}
	return nil, "", fmt.Errorf("unknown task %q; known tasks: %s", name, strings.Join(r.Names(), ", "))
}

// Instance is one evaluated document turned into requests.
type Instance struct {
	DocID    int
	Group    string   // group_by value ("" if none)
	Contexts []string // one per choice (identical unless multiple_input)
	Conts    []string // continuations, target delimiter included
	Choices  []string // bare choice strings (acc_norm lengths)
	Gold     int      // -1 if outside the choices
}

// rendered is one document after doc_to_text / choice / target.
type rendered struct {
	text    string   // doc_to_text (or the gold context for multiple_input)
	choices []string // choices (contexts for multiple_input)
	target  any      // int index or string
	desc    string
	group   string
}

func (t *Task) render(doc map[string]any) (rendered, error) {
	var r rendered
	if t.Cfg.GroupBy != "" {
		r.group = toText(doc[t.Cfg.GroupBy])
	}
	if t.desc != nil {
		s, err := t.desc.Render(doc)
		if err != nil {
			return r, fmt.Errorf("description: %v", err)
		}
		r.desc = s
	}
	tv, err := t.text.Eval(doc)
	if err != nil {
		return r, fmt.Errorf("doc_to_text: %v", err)
	}
	if t.constChoice != nil {
		r.choices = t.constChoice
	} else {
		cv, err := t.choice.Eval(doc)
		if err != nil {
			return r, fmt.Errorf("doc_to_choice: %v", err)
		}
		l, ok := asList(cv)
		if !ok {
			return r, fmt.Errorf("doc_to_choice gave %T, want a list", cv)
		}
		for _, x := range l {
			r.choices = append(r.choices, toText(x))
		}
	}
	if t.constTarget != nil {
		r.target, _ = toInt(t.constTarget)
	} else {
		v, err := t.target.Eval(doc)
		if err != nil {
			return r, fmt.Errorf("doc_to_target: %v", err)
		}
		r.target = digitsToInt(v)
	}
	if t.Cfg.MultipleInput {
		gi, ok := toInt(digitsToInt(tv))
		if !ok || gi < 0 || gi >= len(r.choices) {
			return r, fmt.Errorf("multiple_input: doc_to_text gave %v, want an index into %d contexts", tv, len(r.choices))
		}
		r.text = r.choices[gi] // the few-shot rendering of this doc
		r.target = toText(r.target)
		return r, nil
	}
	r.text = toText(tv)
	return r, nil
}

// digitsToInt is lm-eval's rule: a rendered target that is all digits is
// an index.
func digitsToInt(v any) any {
	if s, ok := v.(string); ok && s != "" {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return v
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	if i, ok := toInt(v); ok {
		return i
	}
	return v
}

// answer is the few-shot answer string of an example.
func (r rendered) answer() (string, error) {
	if i, ok := r.target.(int); ok {
		if i < 0 || i >= len(r.choices) {
			return "", fmt.Errorf("target %d outside %d choices", i, len(r.choices))
		}
		return r.choices[i], nil
	}
	return toText(r.target), nil
}

// prepare applies the preprocessor and checks columns.
func (t *Task) prepare(cols []string, rows []map[string]any, path string) ([]map[string]any, error) {
	for _, c := range t.Cfg.Columns {
		if !slices.Contains(cols, c) {
			return nil, fmt.Errorf("task %s: dataset %s has no column %q required by the task (its columns: %s)", t.Name(), path, c, strings.Join(cols, ", "))
		}
	}
	if t.pre == nil {
		return rows, nil
	}
	out := make([]map[string]any, len(rows))
	for i, d := range rows {
		nd, err := t.pre(d)
		if err != nil {
			return nil, fmt.Errorf("task %s: %s row %d: preprocess %s: %v", t.Name(), path, i, t.Cfg.Preprocess, err)
		}
		out[i] = nd
	}
	return out, nil
}

// BuildOptions control instance building.
type BuildOptions struct {
	Limit      int    // documents per (sub)task; 0 = all
	NumFewshot int    // shots
	Subset     string // only this group_by value
	Rows       RowReader
}

// Build reads the task's data and returns the instances to score.
func (t *Task) Build(o BuildOptions) ([]Instance, error) {
	if t.IsPerplexity() {
		return nil, fmt.Errorf("task %s is a perplexity task", t.Name())
	}
	read := o.Rows
	if read == nil {
		read = ReadRows
	}
	cols, rows, path, err := read(t.TestSpec())
	if err != nil {
		return nil, fmt.Errorf("task %s: %v", t.Name(), err)
	}
	docs, err := t.prepare(cols, rows, path)
	if err != nil {
		return nil, err
	}
	// Few-shot pool.
	var pool []rendered
	var poolDocs []map[string]any
	if o.NumFewshot > 0 {
		spec := t.FewshotSpec()
		if spec == "" {
			return nil, fmt.Errorf("task %s: %d-shot evaluation asked but the task defines no fewshot_split", t.Name(), o.NumFewshot)
		}
		fcols, frows, fpath, err := read(spec)
		if err != nil {
			return nil, fmt.Errorf("task %s: %d-shot evaluation needs the few-shot split %q, which is not available (%v); refusing to fall back to 0-shot", t.Name(), o.NumFewshot, t.Cfg.FewshotSplit, err)
		}
		if poolDocs, err = t.prepare(fcols, frows, fpath); err != nil {
			return nil, err
		}
		for i, d := range poolDocs {
			r, err := t.render(d)
			if err != nil {
				return nil, fmt.Errorf("task %s: %s row %d: %v", t.Name(), fpath, i, err)
			}
			pool = append(pool, r)
		}
	}
	seed := 1234
	if t.Cfg.FewshotSeed != nil {
		seed = *t.Cfg.FewshotSeed
	}
	rnd := NewPyRandom(uint64(seed))
	perGroup := map[string]int{}
	var out []Instance
	for i, d := range docs {
		r, err := t.render(d)
		if err != nil {
			return nil, fmt.Errorf("task %s: %s row %d: %v", t.Name(), path, i, err)
		}
		if o.Subset != "" && r.group != o.Subset {
			continue
		}
		if o.Limit > 0 && perGroup[r.group] >= o.Limit {
			continue
		}
		perGroup[r.group]++
		prefix := r.desc
		if o.NumFewshot > 0 {
			exs, err := t.sample(rnd, pool, poolDocs, d, r.group, o.NumFewshot)
			if err != nil {
				return nil, err
			}
			var b strings.Builder
			b.WriteString(prefix)
			for _, ex := range exs {
				a, err := ex.answer()
				if err != nil {
					return nil, fmt.Errorf("task %s: few-shot example: %v", t.Name(), err)
				}
				b.WriteString(ex.text + t.targetDelim + a + t.fewshotDelim)
			}
			prefix = b.String()
		}
		in := Instance{DocID: i, Group: r.group, Gold: -1}
		if t.Cfg.MultipleInput {
			cont := t.targetDelim + toText(r.target)
			for _, c := range r.choices {
				in.Contexts = append(in.Contexts, prefix+c)
				in.Conts = append(in.Conts, cont)
			}
			in.Choices = r.choices
			gi, _ := toInt(digitsToInt(mustEval(t.text, d)))
			in.Gold = gi
		} else {
			for _, c := range r.choices {
				in.Contexts = append(in.Contexts, prefix+r.text)
				in.Conts = append(in.Conts, t.targetDelim+c)
			}
			in.Choices = r.choices
			switch g := r.target.(type) {
			case int:
				if g >= 0 && g < len(r.choices) {
					in.Gold = g
				}
			case string:
				in.Gold = slices.Index(r.choices, g)
			}
		}
		out = append(out, in)
	}
	if o.Subset != "" && len(out) == 0 {
		return nil, fmt.Errorf("task %s: no documents with %s = %q", t.Name(), t.Cfg.GroupBy, o.Subset)
	}
	return out, nil
}

func mustEval(t *Template, d map[string]any) any {
	v, _ := t.Eval(d)
	return v
}

// sample picks the few-shot examples of one document.
func (t *Task) sample(rnd *PyRandom, pool []rendered, poolDocs []map[string]any, doc map[string]any, group string, k int) ([]rendered, error) {
	idx := make([]int, 0, len(pool))
	for i := range pool {
		if t.Cfg.GroupBy == "" || pool[i].group == group {
			idx = append(idx, i)
		}
	}
	if t.Cfg.FewshotSampler == "first_n" {
		if len(idx) < k {
			return nil, fmt.Errorf("task %s: %d-shot needs %d examples, the few-shot pool has %d", t.Name(), k, k, len(idx))
		}
		out := make([]rendered, k)
		for i := range out {
			out[i] = pool[idx[i]]
		}
		return out, nil
	}
	n := k
	if t.Cfg.FewshotExtraDraw {
		n = k + 1
	}
	if len(idx) < n {
		return nil, fmt.Errorf("task %s: %d-shot needs %d examples, the few-shot pool has %d", t.Name(), k, n, len(idx))
	}
	picked := rnd.Sample(len(idx), n)
	var out []rendered
	for _, p := range picked {
		if sameDoc(poolDocs[idx[p]], doc) {
			continue
		}
		out = append(out, pool[idx[p]])
	}
	if len(out) > k {
		out = out[:k]
	}
	return out, nil
}

func sameDoc(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if toText(v) != toText(b[k]) {
			return false
		}
	}
	return true
}
