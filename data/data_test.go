package data

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/hub"
)

func mirror(t *testing.T) string {
	t.Helper()
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR is not set")
	}
	m := hub.Mirror()
	if _, err := os.Stat(m); err != nil {
		t.Skipf("mirror %s: %v", m, err)
	}
	return m
}

// Row counts and columns from shared/hf/README.md ("Datasets").
var mirrorDatasets = []struct {
	spec string
	rows int
	cols []string
}{
	{"ybisk/piqa/plain_text/validation", 1838, []string{"goal", "sol1", "sol2", "label"}},
	{"allenai/ai2_arc/ARC-Easy/test", 2376, []string{"id", "question", "choices", "answerKey"}},
	{"allenai/ai2_arc/ARC-Challenge/test", 1172, []string{"id", "question", "choices", "answerKey"}},
	{"super_glue/boolq/validation", 3270, []string{"question", "passage", "idx", "label"}},
	{"lucasmccabe/logiqa/default/test", 651, []string{"context", "query", "options", "correct_option"}},
	{"EleutherAI/logiqa/logiqa/test", 651, []string{"label", "context", "question", "options"}},
	{"cais/mmlu/all/test", 14042, []string{"question", "subject", "choices", "answer"}},
	{"cais/mmlu/all/dev", 285, []string{"question", "subject", "choices", "answer"}},
	{"allenai/winogrande/winogrande_xl/validation", 1267, []string{"sentence", "option1", "option2", "answer"}},
	{"allenai/sciq/default/test", 1000, []string{"question", "distractor3", "distractor1", "distractor2", "correct_answer", "support"}},
	{"Rowan/hellaswag/default/validation", 10042, []string{"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id", "split", "split_type", "label"}},
	{"Salesforce/wikitext/wikitext-2-raw-v1/test", 4358, []string{"text"}},
	{"allenai/c4/en/validation_sample2k", 2000, []string{"text", "timestamp", "url"}},
	{"HuggingFaceFW/fineweb-edu/sample-150docs/train", 150, []string{"text"}},
	{"roneneldan/TinyStories/default/validation_prefix", 4302, []string{"text"}},
}

func TestMirrorDatasets(t *testing.T) {
	mirror(t)
	for _, d := range mirrorDatasets {
		t.Run(d.spec, func(t *testing.T) {
			cols, rows, err := ReadRows("hf-dataset:" + d.spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != d.rows {
				t.Errorf("rows = %d, want %d", len(rows), d.rows)
			}
			// Column sets are compared as sets: the README lists the
			// columns, the order is the file's.
			a, b := append([]string(nil), cols...), append([]string(nil), d.cols...)
			sortStrings(a)
			sortStrings(b)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("cols = %v, want %v", cols, d.cols)
			}
			for i, r := range rows {
				if len(r) != len(cols) {
					t.Fatalf("row %d has %d fields, want %d", i, len(r), len(cols))
				}
			}
		})
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestKnownRows(t *testing.T) {
	mirror(t)
	_, piqa, err := ReadRows("hf-dataset:ybisk/piqa/plain_text/validation")
	if err != nil {
		t.Fatal(err)
	}
	if piqa[0]["label"] != int64(0) {
		t.Errorf("PIQA #0 label = %#v, want int64 0", piqa[0]["label"])
	}
	_, arc, err := ReadRows("hf-dataset:allenai/ai2_arc/ARC-Easy/test")
	if err != nil {
		t.Fatal(err)
	}
	if arc[0]["id"] != "Mercury_417466" || arc[0]["answerKey"] != "A" {
		t.Errorf("ARC-E #0 = %v", arc[0])
	}
	ch, ok := arc[0]["choices"].(map[string]any)
	if !ok {
		t.Fatalf("choices is %T", arc[0]["choices"])
	}
	if !reflect.DeepEqual(ch["label"], []string{"A", "B", "C", "D"}) {
		t.Errorf("choices.label = %#v", ch["label"])
	}
	if txt, ok := ch["text"].([]string); !ok || len(txt) != 4 || txt[0] != "Sunlight is the source of energy for nearly all ecosystems." {
		t.Errorf("choices.text = %#v", ch["text"])
	}
	_, hs, err := ReadRows("hf-dataset:Rowan/hellaswag/default/validation")
	if err != nil {
		t.Fatal(err)
	}
	h := hs[0]
	if h["ctx_a"] != "A man is sitting on a roof." || h["ctx_b"] != "he" || h["label"] != "3" || h["ind"] != int64(0) ||
		h["activity_label"] != "Roof shingle removal" {
		t.Errorf("HellaSwag #0 = %v", h)
	}
	if e, ok := h["endings"].([]string); !ok || len(e) != 4 {
		t.Errorf("endings = %#v", h["endings"])
	}
	if hs[10041]["ind"] != int64(10041) {
		t.Errorf("HellaSwag last ind = %#v", hs[10041]["ind"])
	}
	_, bq, err := ReadRows("hf-dataset:super_glue/boolq/validation")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range bq {
		if r["idx"] != int64(i) {
			t.Fatalf("BoolQ row %d idx = %#v", i, r["idx"])
		}
	}
	if bq[0]["label"] != int64(0) {
		t.Errorf("BoolQ #0 label = %#v", bq[0]["label"])
	}
	_, mm, err := ReadRows("hf-dataset:cais/mmlu/all/test")
	if err != nil {
		t.Fatal(err)
	}
	if mm[0]["subject"] != "abstract_algebra" || mm[0]["answer"] != int64(1) {
		t.Errorf("MMLU #0 = %v", mm[0])
	}
	_, wg, err := ReadRows("hf-dataset:allenai/winogrande/winogrande_xl/validation")
	if err != nil {
		t.Fatal(err)
	}
	if wg[0]["answer"] != "2" {
		t.Errorf("WinoGrande #0 answer = %#v", wg[0]["answer"])
	}
	_, sq, err := ReadRows("hf-dataset:allenai/sciq/default/test")
	if err != nil {
		t.Fatal(err)
	}
	if sq[0]["correct_answer"] != "oxidants" {
		t.Errorf("SciQ #0 = %v", sq[0]["correct_answer"])
	}
	_, lq, err := ReadRows("hf-dataset:lucasmccabe/logiqa/default/test")
	if err != nil {
		t.Fatal(err)
	}
	if lq[0]["correct_option"] != int64(0) {
		t.Errorf("LogiQA correct_option = %#v", lq[0]["correct_option"])
	}
	if o, ok := lq[0]["options"].([]string); !ok || len(o) != 4 {
		t.Errorf("LogiQA options = %#v", lq[0]["options"])
	}
}

func TestReadTextsMirror(t *testing.T) {
	mirror(t)
	wt, err := ReadTexts("hf-dataset:Salesforce/wikitext/wikitext-2-raw-v1/test")
	if err != nil {
		t.Fatal(err)
	}
	if len(wt) != 4358 || wt[0] != "" || wt[1] != " = Robert Boulter = \n" {
		t.Fatalf("wikitext: %d rows, first %q %q", len(wt), wt[0], wt[1])
	}
	empty, total := 0, 0
	for _, s := range wt {
		if s == "" {
			empty++
		}
	}
	total = len(strings.Join(wt, "\n\n"))
	if empty != 1467 {
		t.Errorf("wikitext empty rows = %d, want 1467", empty)
	}
	// The README gives 1,294,336 characters (Python str length).
	if n := len([]rune(strings.Join(wt, "\n\n"))); n != 1294336 {
		t.Errorf("joined wikitext = %d chars (%d bytes), want 1294336", n, total)
	}
	fw, err := ReadTexts("hf-dataset:HuggingFaceFW/fineweb-edu/sample-150docs/train")
	if err != nil {
		t.Fatal(err)
	}
	if len(fw) != 150 || !strings.HasPrefix(fw[0], "The Independent Jane") {
		t.Errorf("fineweb: %d docs, first %.40q", len(fw), fw[0])
	}
	ts, err := ReadTexts("hf-dataset:roneneldan/TinyStories/default/validation_prefix")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 4302 || !strings.HasPrefix(ts[0], "Spot. Spot saw the shiny car") {
		t.Errorf("tinystories: %d docs, first %.40q", len(ts), ts[0])
	}
	// A parquet without a text column names the file and the column.
	m := mirror(t)
	p := filepath.Join(m, "datasets/ybisk/piqa/plain_text/validation.parquet")
	_, err = ReadTexts(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `"text"`) {
		t.Errorf("missing column error = %v", err)
	}
}

type optRow struct {
	Text    *string  `parquet:"text,optional"`
	N       *int32   `parquet:"n,optional"`
	F       float32  `parquet:"f"`
	Choices []string `parquet:"choices,list"`
}

func writeParquet[T any](t *testing.T, path string, rows []T) {
	t.Helper()
	if err := parquet.WriteFile(path, rows); err != nil {
		t.Fatal(err)
	}
}

func TestLocalFiles(t *testing.T) {
	dir := t.TempDir()
	s := func(x string) *string { return &x }
	i32 := func(x int32) *int32 { return &x }
	// A folder of shards is read in sorted order.
	shards := filepath.Join(dir, "shards")
	os.Mkdir(shards, 0o755)
	writeParquet(t, filepath.Join(shards, "0001.parquet"), []optRow{{Text: s("c"), F: 1.5, Choices: []string{}}})
	writeParquet(t, filepath.Join(shards, "0000.parquet"), []optRow{{Text: s("a"), N: i32(7), F: 0.25, Choices: []string{"x", "y"}}, {Text: nil}})
	texts, err := ReadTexts(shards)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(texts, []string{"a", "", "c"}) {
		t.Errorf("texts = %q", texts)
	}
	cols, rows, err := ReadRows(shards)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cols, []string{"text", "n", "f", "choices"}) {
		t.Errorf("cols = %v", cols)
	}
	want0 := map[string]any{"text": "a", "n": int64(7), "f": float64(0.25), "choices": []string{"x", "y"}}
	if !reflect.DeepEqual(rows[0], want0) {
		t.Errorf("row 0 = %#v", rows[0])
	}
	if rows[1]["text"] != nil || rows[1]["n"] != nil {
		t.Errorf("row 1 = %#v", rows[1])
	}
	if c, ok := rows[2]["choices"].([]string); !ok || len(c) != 0 {
		t.Errorf("empty list = %#v", rows[2]["choices"])
	}

	// JSON lines.
	jl := filepath.Join(dir, "x.jsonl")
	os.WriteFile(jl, []byte(`{"text": "hello", "label": 3, "p": 0.5, "opts": ["a","b"], "s": {"k": [1, 2]}}`+"\n\n"+`{"text": "world", "extra": null}`+"\n"), 0o644)
	texts, err = ReadTexts(jl)
	if err != nil || !reflect.DeepEqual(texts, []string{"hello", "world"}) {
		t.Errorf("jsonl texts = %q, %v", texts, err)
	}
	cols, rows, err = ReadRows(jl)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cols, []string{"text", "label", "p", "opts", "s", "extra"}) {
		t.Errorf("jsonl cols = %v", cols)
	}
	if rows[0]["label"] != int64(3) || rows[0]["p"] != 0.5 || !reflect.DeepEqual(rows[0]["opts"], []string{"a", "b"}) ||
		!reflect.DeepEqual(rows[0]["s"], map[string]any{"k": []any{int64(1), int64(2)}}) {
		t.Errorf("jsonl row 0 = %#v", rows[0])
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"question": "q"}`+"\n"), 0o644)
	if _, err := ReadTexts(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "text") {
		t.Errorf("jsonl missing text error = %v", err)
	}
	os.WriteFile(bad, []byte("{\"text\": \"q\"}\n{broken\n"), 0o644)
	if _, _, err := ReadRows(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("broken jsonl error = %v", err)
	}

	// A text file is one document.
	txt := filepath.Join(dir, "doc.txt")
	os.WriteFile(txt, []byte("line one\nline two\n"), 0o644)
	texts, err = ReadTexts(txt)
	if err != nil || !reflect.DeepEqual(texts, []string{"line one\nline two\n"}) {
		t.Errorf("txt = %q, %v", texts, err)
	}

	// Garbage with a .parquet name gives an error naming the file.
	junk := filepath.Join(dir, "junk.parquet")
	os.WriteFile(junk, []byte("PAR1 this is not parquet PAR1"), 0o644)
	if _, _, err := ReadRows(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk parquet error = %v", err)
	}
	if _, err := ReadTexts(filepath.Join(dir, "missing.parquet")); err == nil {
		t.Error("missing file: no error")
	}
	empty := filepath.Join(dir, "emptydir")
	os.Mkdir(empty, 0o755)
	if _, err := ReadTexts(empty); err == nil || !strings.Contains(err.Error(), "no .parquet") {
		t.Errorf("empty folder error = %v", err)
	}
}

func TestReadTextsRange(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.jsonl")
	os.WriteFile(p, []byte("{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\"}\n{\"text\":\"d\"}\n"), 0o644)
	for _, c := range []struct {
		spec string
		want string
	}{{p, "abcd"}, {p + "[1:3]", "bc"}, {p + "[:2]", "ab"}, {p + "[2:]", "cd"}, {p + "[3:99]", "d"}, {p + "[:]", "abcd"}} {
		docs, err := ReadTexts(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if got := strings.Join(docs, ""); got != c.want {
			t.Errorf("%s: got %q want %q", c.spec, got, c.want)
		}
	}
	for _, bad := range []string{p + "[3:1]", p + "[x:1]", p + "[1]", p + "[-1:]"} {
		if _, err := ReadTexts(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
