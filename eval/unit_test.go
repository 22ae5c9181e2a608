package eval

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	doc := map[string]any{
		"goal": "G", "sol1": "a", "sol2": "b", "n": int64(2),
		"choices":   map[string]any{"text": []string{"x", "y", "z"}, "label": []string{"A", "B", "C"}},
		"answerKey": "B", "support": "  s ", "subject": "high_school_us_history",
		"label": " c ", "ctx_b": "then, the man writes over the DVD",
	}
	cases := []struct {
		tpl  string
		want any
	}{
		{"Question: {{goal}}\nAnswer:", "Question: G\nAnswer:"},
		{"{{[sol1, sol2]}}", []string{"a", "b"}},
		{"{{choices.text}}", []string{"x", "y", "z"}},
		{"{{choices.label.index(answerKey)}}", int64(1)},
		{"{{support.lstrip()}}|", "s |"},
		{"{{subject.split('_') | join(' ')}}", "high school us history"},
		{"{{['a', 'b', 'c', 'd'].index(label.strip())}}", int64(2)},
		{"{{choices.text[2]}}{{n}}", "z2"},
		{"{{ctx_b.capitalize()}}", "Then, the man writes over the dvd"},
	}
	for _, c := range cases {
		tp, err := ParseTemplate(c.tpl)
		if err != nil {
			t.Fatalf("%q: %v", c.tpl, err)
		}
		got, err := tp.Eval(doc)
		if err != nil {
			t.Fatalf("%q: %v", c.tpl, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q = %#v, want %#v", c.tpl, got, c.want)
		}
	}
	tp, _ := ParseTemplate("{{missing}}")
	if _, err := tp.Eval(doc); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("undefined field: err = %v", err)
	}
}

// TestPyRandom checks against CPython 3: random.Random(1234).
func TestPyRandom(t *testing.T) {
	r := NewPyRandom(1234)
	want := []uint32{4150886329, 3342196574, 1892932127}
	for i, w := range want {
		if g := r.Uint32(); g != w {
			t.Fatalf("getrandbits(32) #%d = %d, want %d", i, g, w)
		}
	}
	if g := NewPyRandom(1234).Random(); g != 0.9664535356921388 {
		t.Fatalf("random() = %v", g)
	}
	r = NewPyRandom(1234)
	s1, s2, s3 := r.Sample(40398, 6), r.Sample(10, 3), r.Sample(1119, 26)
	if !reflect.DeepEqual(s1, []int{28883, 7657, 490, 5940, 38156, 2288}) || !reflect.DeepEqual(s2, []int{1, 9, 5}) ||
		!reflect.DeepEqual(s3, []int{484, 35, 63, 32, 708, 991, 949, 304, 186, 374, 234, 29, 1030, 996, 511, 132, 1108, 954, 140, 182, 1054, 94, 552, 129, 619, 985}) {
		t.Fatalf("sample: %v %v %v", s1, s2, s3)
	}
}

// fakeLM returns preset log-likelihoods keyed by continuation.
type fakeLM struct {
	ll    map[string]float64
	calls int
}

func (f *fakeLM) Loglikelihoods(reqs []Request) ([]Result, error) {
	f.calls++
	out := make([]Result, len(reqs))
	for i, r := range reqs {
		out[i].LL = f.ll[strings.TrimSpace(r.Continuation)]
		out[i].Truncated = strings.Contains(r.Context, "LONG")
	}
	return out, nil
}

func memRows(cols []string, rows []map[string]any) RowReader {
	return func(spec string) ([]string, []map[string]any, string, error) {
		if strings.HasSuffix(spec, "/train") {
			return nil, nil, "", errString("hf-dataset: " + spec + " does not exist in the mirror")
		}
		return cols, rows, "mem:" + spec, nil
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestAccAccNormStderr(t *testing.T) {
	reg, err := LoadRegistry("")
	if err != nil {
		t.Fatal(err)
	}
	cols := []string{"goal", "sol1", "sol2", "label"}
	rows := []map[string]any{
		// short choice "a" has ll -2 (per char -2), long "bbbb" ll -3 (per char -0.75).
		{"goal": "g0", "sol1": "a", "sol2": "bbbb", "label": int64(0)},   // acc 1 (−2 > −3), acc_norm 0
		{"goal": "g1", "sol1": "a", "sol2": "bbbb", "label": int64(1)},   // acc 0, acc_norm 1
		{"goal": "LONG", "sol1": "a", "sol2": "bbbb", "label": int64(0)}, // acc 1, acc_norm 0
		{"goal": "g3", "sol1": "cc", "sol2": "dd", "label": int64(1)},    // tie: argmax picks 0 → both 0
	}
	lm := &fakeLM{ll: map[string]float64{"a": -2, "bbbb": -3, "cc": -1, "dd": -1}}
	var log strings.Builder
	rep, err := Evaluate(lm, reg, []TaskSpec{{Task: "piqa", Metric: "acc"}}, Options{Rows: memRows(cols, rows), LogSamples: &log})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.N != 4 || r.Metrics["acc"] != 0.5 || r.Metrics["acc_norm"] != 0.25 {
		t.Fatalf("n=%d acc=%v acc_norm=%v", r.N, r.Metrics["acc"], r.Metrics["acc_norm"])
	}
	// acc = [1,0,1,0]: sample sd = sqrt(4·0.25/3); stderr = sd/2.
	if want := math.Sqrt(1.0/3) / 2; math.Abs(r.Metrics["acc_stderr"]-want) > 1e-12 {
		t.Fatalf("acc_stderr = %v, want %v", r.Metrics["acc_stderr"], want)
	}
	if want := math.Sqrt(0.75/3) / 2; math.Abs(r.Metrics["acc_norm_stderr"]-want) > 1e-12 {
		t.Fatalf("acc_norm_stderr = %v, want %v", r.Metrics["acc_norm_stderr"], want)
	}
	if r.Truncated != 2 || r.Requests != 8 {
		t.Fatalf("truncated=%d requests=%d", r.Truncated, r.Requests)
	}
	if rep.Average == nil || *rep.Average != 50 {
		t.Fatalf("average = %v", rep.Average)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `"contexts":["Question: g0\nAnswer:","Question: g0\nAnswer:"]`) ||
		!strings.Contains(lines[0], `"continuations":[" a"," bbbb"]`) || !strings.Contains(lines[0], `"pred":0,"pred_norm":1`) {
		t.Fatalf("log samples: %s", lines[0])
	}
	// Limit.
	rep, err = Evaluate(lm, reg, []TaskSpec{{Task: "piqa"}}, Options{Rows: memRows(cols, rows), Limit: 2})
	if err != nil || rep.Results[0].N != 2 {
		t.Fatalf("limit: %v %v", err, rep)
	}
	if _, err := Evaluate(lm, reg, []TaskSpec{{Task: "piqa"}}, Options{Rows: memRows(cols, rows), Limit: -1}); err == nil {
		t.Fatal("negative limit accepted")
	}
}

func TestFewshotRefusal(t *testing.T) {
	reg, _ := LoadRegistry("")
	cols := []string{"goal", "sol1", "sol2", "label"}
	rows := []map[string]any{{"goal": "g", "sol1": "a", "sol2": "b", "label": int64(0)}}
	five := 5
	lm := &fakeLM{}
	_, err := Evaluate(lm, reg, []TaskSpec{{Task: "piqa", Shots: &five}}, Options{Rows: memRows(cols, rows)})
	if err == nil || !strings.Contains(err.Error(), "refusing to fall back to 0-shot") || !strings.Contains(err.Error(), "train") {
		t.Fatalf("err = %v", err)
	}
	if lm.calls != 0 {
		t.Fatal("scored despite the refusal")
	}
}

func TestUnknownTaskAndColumns(t *testing.T) {
	reg, _ := LoadRegistry("")
	_, err := Evaluate(&fakeLM{}, reg, []TaskSpec{{Task: "piqaa"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "known tasks") || !strings.Contains(err.Error(), "hellaswag") {
		t.Fatalf("err = %v", err)
	}
	cols := []string{"goal", "sol1", "solution2", "label"}
	_, err = Evaluate(&fakeLM{}, reg, []TaskSpec{{Task: "piqa"}}, Options{Rows: memRows(cols, nil)})
	if err == nil || !strings.Contains(err.Error(), `"sol2"`) || !strings.Contains(err.Error(), "mem:hf-dataset:ybisk/piqa/plain_text/validation") {
		t.Fatalf("err = %v", err)
	}
}

func TestMMLUFewshotAndGroup(t *testing.T) {
	reg, _ := LoadRegistry("")
	cols := []string{"question", "subject", "choices", "answer"}
	var test, dev []map[string]any
	for _, s := range []string{"anatomy", "abstract_algebra"} {
		for i := 0; i < 6; i++ {
			dev = append(dev, map[string]any{"question": s + " dev" + string(rune('0'+i)), "subject": s, "choices": []string{"w", "x", "y", "z"}, "answer": int64(i % 4)})
		}
		for i := 0; i < 3; i++ {
			test = append(test, map[string]any{"question": " " + s + " q ", "subject": s, "choices": []string{"w", "x", "y", "z"}, "answer": int64(i)})
		}
	}
	read := func(spec string) ([]string, []map[string]any, string, error) {
		if strings.HasSuffix(spec, "/dev") {
			return cols, dev, spec, nil
		}
		return cols, test, spec, nil
	}
	lm := &fakeLM{ll: map[string]float64{"A": -1, "B": -2, "C": -3, "D": -4}}
	var log strings.Builder
	rep, err := Evaluate(lm, reg, []TaskSpec{{Task: "mmlu", Metric: "acc"}}, Options{Rows: read, LogSamples: &log})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 || rep.Results[0].Task != "mmlu" || rep.Results[1].Task != "mmlu_abstract_algebra" {
		t.Fatalf("results: %+v", rep.Results)
	}
	if g := rep.Results[0]; g.N != 6 || math.Abs(g.Metrics["acc"]-2.0/6) > 1e-12 {
		t.Fatalf("group: n=%d acc=%v", g.N, g.Metrics["acc"])
	}
	first := strings.Split(log.String(), "\n")[0]
	want := "The following are multiple choice questions (with answers) about anatomy.\\n\\n" +
		"anatomy dev0\\nA. w\\nB. x\\nC. y\\nD. z\\nAnswer: A\\n\\n" +
		"anatomy dev1\\nA. w\\nB. x\\nC. y\\nD. z\\nAnswer: B\\n\\n"
	if !strings.Contains(first, want) || !strings.Contains(first, "anatomy dev4\\nA. w\\nB. x\\nC. y\\nD. z\\nAnswer: A\\n\\nanatomy q\\nA. w") || strings.Contains(first, "dev5") {
		t.Fatalf("mmlu context: %s", first)
	}
	// lm-eval's pooled_sample_stderr: two subjects of 3 with stderr 1/3 each:
	// sqrt((2·(1/9)·3·2) / (6−2) / 6).
	se := math.Sqrt(4.0 / 3 / 4 / 6)
	if math.Abs(rep.Results[0].Metrics["acc_stderr"]-se) > 1e-12 {
		t.Fatalf("pooled stderr %v vs %v", rep.Results[0].Metrics["acc_stderr"], se)
	}
	// Subtask selection.
	rep, err = Evaluate(lm, reg, []TaskSpec{{Task: "mmlu_anatomy"}}, Options{Rows: read})
	if err != nil || len(rep.Results) != 1 || rep.Results[0].N != 3 {
		t.Fatalf("subtask: %v %+v", err, rep)
	}
}

func TestPredictTies(t *testing.T) {
	p, pn := Predict([]float64{-1, -1, -0.5}, []string{"é", "ab", "abcdef"})
	if p != 2 || pn != 2 {
		t.Fatalf("%d %d", p, pn)
	}
	// "é" is one code point: −1/1 = −1 vs −1.2/2 = −0.6.
	_, pn = Predict([]float64{-1, -1.2}, []string{"é", "ab"})
	if pn != 1 {
		t.Fatalf("pred_norm = %d", pn)
	}
}

// mergeTok encodes each byte as a token, except that "s ." becomes one token,
// so encode("carrots" + " .") is as long as encode("carrots").
type mergeTok struct{}

func (mergeTok) Encode(s string) []int {
	var out []int
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], "s .") {
			out = append(out, 300)
			i += 2
			continue
		}
		out = append(out, int(s[i]))
	}
	return out
}
func (mergeTok) Decode([]int) string { return "" }
func (mergeTok) VocabSize() int      { return 301 }
func (mergeTok) BOS() int            { return -1 }
func (mergeTok) EOS() int            { return -1 }
func (mergeTok) AddBOS() bool        { return false }

// A continuation that gets no tokens of its own scores 0, as in lm-eval.
func TestEmptyContinuation(t *testing.T) {
	ctx, cont := EncodePair(mergeTok{}, "the carrots", " .", false)
	if len(ctx) != 11 || len(cont) != 0 {
		t.Fatalf("ctx %v cont %v", ctx, cont)
	}
	// Trailing whitespace of the context moves to the continuation.
	ctx, cont = EncodePair(mergeTok{}, "Answer: ", "B", false)
	if len(ctx) != 7 || len(cont) != 2 || cont[0] != ' ' {
		t.Fatalf("ctx %v cont %v", ctx, cont)
	}
	lm := &ModelLM{Tok: mergeTok{}, MaxLen: 512}
	res, err := lm.Loglikelihoods([]Request{{Context: "the carrots", Continuation: " ."}})
	if err != nil || res[0].LL != 0 || lm.EmptyContinuations != 1 {
		t.Fatalf("res %+v err %v", res, err)
	}
}
