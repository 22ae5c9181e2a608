package eval

import (
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// Preprocessor is a named document transformation referenced from a task's
// YAML (lm-eval's process_docs / Python doc_to_* functions). It returns a new
// document with extra fields; templates then read those fields.
type Preprocessor func(doc map[string]any) (map[string]any, error)

// Preprocessors are the named preprocessors tasks may use.
var Preprocessors = map[string]Preprocessor{
	"hellaswag":  preHellaswag,
	"winogrande": preWinogrande,
	"logiqa":     preLogiqa,
}

func preprocessorNames() []string {
	var n []string
	for k := range Preprocessors {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func str(doc map[string]any, k string) (string, error) {
	v, ok := doc[k]
	if !ok {
		return "", fmt.Errorf("missing field %q", k)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("field %q is %T, want string", k, v)
	}
	return s, nil
}

func strList(doc map[string]any, k string) ([]string, error) {
	v, ok := doc[k]
	if !ok {
		return nil, fmt.Errorf("missing field %q", k)
	}
	l, ok := asList(v)
	if !ok {
		return nil, fmt.Errorf("field %q is %T, want a list", k, v)
	}
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = toText(x)
	}
	return out, nil
}

var hsBracket = regexp.MustCompile(`\[.*?\]`)

// hellaswagClean is lm-eval's hellaswag/utils.py preprocess().
func hellaswagClean(text string) string {
	text = strings.TrimFunc(text, unicode.IsSpace)
	text = strings.ReplaceAll(text, " [title]", ". ")
	text = hsBracket.ReplaceAllString(text, "")
	text = strings.ReplaceAll(text, "  ", " ")
	return text
}

// preHellaswag is lm-eval's hellaswag process_docs: adds query (cleaned
// "activity_label: ctx_a Ctx_b"), choices (cleaned endings) and gold.
func preHellaswag(doc map[string]any) (map[string]any, error) {
	al, err := str(doc, "activity_label")
	if err != nil {
		return nil, err
	}
	a, err := str(doc, "ctx_a")
	if err != nil {
		return nil, err
	}
	b, err := str(doc, "ctx_b")
	if err != nil {
		return nil, err
	}
	ends, err := strList(doc, "endings")
	if err != nil {
		return nil, err
	}
	lbl, err := str(doc, "label")
	if err != nil {
		return nil, err
	}
	out := maps.Clone(doc)
	out["query"] = hellaswagClean(al + ": " + a + " " + pyCapitalize(b))
	ch := make([]string, len(ends))
	for i, e := range ends {
		ch[i] = hellaswagClean(e)
	}
	out["choices"] = ch
	out["gold"] = digitsToInt(lbl)
	return out, nil
}

// preWinogrande is lm-eval's preprocess_winogrande.py: wg_gold (gold index),
// wg_contexts (sentence up to the blank with each option) and wg_target
// (the rest of the sentence after the blank, stripped).
func preWinogrande(doc map[string]any) (map[string]any, error) {
	s, err := str(doc, "sentence")
	if err != nil {
		return nil, err
	}
	o1, err := str(doc, "option1")
	if err != nil {
		return nil, err
	}
	o2, err := str(doc, "option2")
	if err != nil {
		return nil, err
	}
	ans, err := str(doc, "answer")
	if err != nil {
		return nil, err
	}
	i := strings.Index(s, "_")
	if i < 0 {
		return nil, fmt.Errorf("sentence has no blank '_'")
	}
	gold := map[string]int{"1": 0, "2": 1}
	g, ok := gold[ans]
	if !ok {
		return nil, fmt.Errorf("answer %q is not \"1\" or \"2\"", ans)
	}
	out := maps.Clone(doc)
	out["wg_gold"] = int64(g)
	out["wg_contexts"] = []string{s[:i] + o1, s[:i] + o2}
	out["wg_target"] = strings.TrimFunc(s[i+1:], unicode.IsSpace)
	return out, nil
}

// preLogiqa is lm-eval's utils_logiqa.py doc_to_text, stored in "prompt".
func preLogiqa(doc map[string]any) (map[string]any, error) {
	c, err := str(doc, "context")
	if err != nil {
		return nil, err
	}
	q, err := str(doc, "question")
	if err != nil {
		return nil, err
	}
	opts, err := strList(doc, "options")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("Passage: " + c + "\n")
	b.WriteString("Question: " + q + "\nChoices:\n")
	for i, o := range opts {
		if i >= 4 { // zip(["a","b","c","d"], options)
			break
		}
		b.WriteString(string(rune('A'+i)) + ". " + o + "\n")
	}
	b.WriteString("Answer:")
	out := maps.Clone(doc)
	out["prompt"] = b.String()
	return out, nil
}
