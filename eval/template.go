package eval

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The template language is the small subset of Jinja2 that lm-eval's task
// YAMLs use: literal text with {{ expression }} substitutions. Expressions:
//
//	field            doc["field"]
//	a.b  a[0]        struct field / list element
//	'x' "x" 12       string and int literals
//	[e1, e2, ...]    list literal
//	x.strip() x.lstrip() x.rstrip() x.capitalize() x.lower() x.upper()
//	x.replace(a, b) x.split(sep) x.index(v)         Python str / list methods
//	x | trim | lower | upper | capitalize | replace(a, b) | join(sep) | length
//
// A template made of exactly one {{ expression }} evaluates to the value
// itself (a list stays a list, like lm-eval's literal_eval of the rendered
// repr); otherwise values are rendered to text and concatenated.

// Template is a parsed template.
type Template struct {
	src   string
	parts []tplPart
}

type tplPart struct {
	lit  string
	expr expr // nil for a literal part
}

// ParseTemplate parses src.
func ParseTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	rest := src
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, tplPart{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, tplPart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %q: unclosed {{", src)
		}
		p := &exprParser{src: rest[i+2 : i+j]}
		e, err := p.parse()
		if err != nil {
			return nil, fmt.Errorf("template %q: %v", src, err)
		}
		t.parts = append(t.parts, tplPart{expr: e})
		rest = rest[i+j+2:]
	}
}

// Fields lists the top-level document fields the template reads.
func (t *Template) Fields() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range t.parts {
		if p.expr != nil {
			p.expr.fields(func(s string) {
				if !seen[s] {
					seen[s] = true
					out = append(out, s)
				}
			})
		}
	}
	return out
}

// Eval evaluates the template on doc.
func (t *Template) Eval(doc map[string]any) (any, error) {
	if len(t.parts) == 1 && t.parts[0].expr != nil {
		return t.parts[0].expr.eval(doc)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.expr.eval(doc)
		if err != nil {
			return nil, err
		}
		b.WriteString(toText(v))
	}
	return b.String(), nil
}

// Render evaluates the template and renders the result as text.
func (t *Template) Render(doc map[string]any) (string, error) {
	v, err := t.Eval(doc)
	if err != nil {
		return "", err
	}
	return toText(v), nil
}

// toText renders a value as Jinja would (lists as Python reprs).
func toText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "None"
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = pyRepr(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case []any:
		q := make([]string, len(x))
		for i, s := range x {
			if str, ok := s.(string); ok {
				q[i] = pyRepr(str)
			} else {
				q[i] = toText(s)
			}
		}
		return "[" + strings.Join(q, ", ") + "]"
	case bool:
		if x {
			return "True"
		}
		return "False"
	default:
		return fmt.Sprint(x)
	}
}

func pyRepr(s string) string {
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, "\t", `\t`, q, `\`+q)
	return q + r.Replace(s) + q
}

// ---- expressions ----

type expr interface {
	eval(doc map[string]any) (any, error)
	fields(func(string))
}

type identExpr struct{ name string }
type litExpr struct{ v any }
type listExpr struct{ items []expr }
type attrExpr struct {
	x    expr
	name string
}
type indexExpr struct{ x, i expr }
type callExpr struct {
	x    expr // receiver (nil for none)
	name string
	args []expr
}

func (e identExpr) eval(doc map[string]any) (any, error) {
	v, ok := doc[e.name]
	if !ok {
		return nil, fmt.Errorf("undefined field %q", e.name)
	}
	return v, nil
}
func (e identExpr) fields(f func(string))          { f(e.name) }
func (e litExpr) eval(map[string]any) (any, error) { return e.v, nil }
func (e litExpr) fields(func(string))              {}
func (e listExpr) eval(doc map[string]any) (any, error) {
	out := make([]any, len(e.items))
	for i, it := range e.items {
		v, err := it.eval(doc)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return normList(out), nil
}
func (e listExpr) fields(f func(string)) {
	for _, it := range e.items {
		it.fields(f)
	}
}
func (e attrExpr) eval(doc map[string]any) (any, error) {
	v, err := e.x.eval(doc)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%T has no attribute %q", v, e.name)
	}
	r, ok := m[e.name]
	if !ok {
		return nil, fmt.Errorf("undefined attribute %q", e.name)
	}
	return r, nil
}
func (e attrExpr) fields(f func(string)) { e.x.fields(f) }
func (e indexExpr) eval(doc map[string]any) (any, error) {
	v, err := e.x.eval(doc)
	if err != nil {
		return nil, err
	}
	iv, err := e.i.eval(doc)
	if err != nil {
		return nil, err
	}
	if m, ok := v.(map[string]any); ok {
		k, ok := iv.(string)
		if !ok {
			return nil, fmt.Errorf("map index must be a string")
		}
		r, ok := m[k]
		if !ok {
			return nil, fmt.Errorf("undefined key %q", k)
		}
		return r, nil
	}
	i, ok := toInt(iv)
	if !ok {
		return nil, fmt.Errorf("index %v is not an integer", iv)
	}
	l, ok := asList(v)
	if !ok {
		return nil, fmt.Errorf("cannot index %T", v)
	}
	if i < 0 {
		i += len(l)
	}
	if i < 0 || i >= len(l) {
		return nil, fmt.Errorf("index %d out of range (len %d)", i, len(l))
	}
	return l[i], nil
}
func (e indexExpr) fields(f func(string)) { e.x.fields(f); e.i.fields(f) }

func (e callExpr) fields(f func(string)) {
	if e.x != nil {
		e.x.fields(f)
	}
	for _, a := range e.args {
		a.fields(f)
	}
}

func (e callExpr) eval(doc map[string]any) (any, error) {
	v, err := e.x.eval(doc)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(e.args))
	for i, a := range e.args {
		if args[i], err = a.eval(doc); err != nil {
			return nil, err
		}
	}
	strArg := func(i int) (string, error) {
		if i >= len(args) {
			return "", fmt.Errorf("%s: missing argument %d", e.name, i+1)
		}
		s, ok := args[i].(string)
		if !ok {
			return "", fmt.Errorf("%s: argument %d is not a string", e.name, i+1)
		}
		return s, nil
	}
	if l, ok := asList(v); ok {
		switch e.name {
		case "index":
			if len(args) != 1 {
				return nil, fmt.Errorf("index takes one argument")
			}
			for i, x := range l {
				if equal(x, args[0]) {
					return int64(i), nil
				}
			}
			return nil, fmt.Errorf("%v is not in list %v", toText(args[0]), toText(v))
		case "length", "count":
			return int64(len(l)), nil
		case "join":
			sep := ""
			if len(args) > 0 {
				if sep, err = strArg(0); err != nil {
					return nil, err
				}
			}
			s := make([]string, len(l))
			for i, x := range l {
				s[i] = toText(x)
			}
			return strings.Join(s, sep), nil
		}
		return nil, fmt.Errorf("unknown list method %q", e.name)
	}
	s, ok := v.(string)
	if !ok {
		if e.name == "string" {
			return toText(v), nil
		}
		return nil, fmt.Errorf("method %q on %T", e.name, v)
	}
	switch e.name {
	case "strip", "trim":
		if len(args) == 1 {
			c, err := strArg(0)
			if err != nil {
				return nil, err
			}
			return strings.Trim(s, c), nil
		}
		return strings.TrimFunc(s, unicode.IsSpace), nil
	case "lstrip":
		return strings.TrimLeftFunc(s, unicode.IsSpace), nil
	case "rstrip":
		return strings.TrimRightFunc(s, unicode.IsSpace), nil
	case "lower":
		return strings.ToLower(s), nil
	case "upper":
		return strings.ToUpper(s), nil
	case "capitalize":
		return pyCapitalize(s), nil
	case "string":
		return s, nil
	case "length":
		return int64(utf8.RuneCountInString(s)), nil
	case "replace":
		a, err := strArg(0)
		if err != nil {
			return nil, err
		}
		b, err := strArg(1)
		if err != nil {
			return nil, err
		}
		return strings.ReplaceAll(s, a, b), nil
	case "split":
		if len(args) == 0 {
			return strings.Fields(s), nil
		}
		sep, err := strArg(0)
		if err != nil {
			return nil, err
		}
		return strings.Split(s, sep), nil
	case "index":
		sub, err := strArg(0)
		if err != nil {
			return nil, err
		}
		i := strings.Index(s, sub)
		if i < 0 {
			return nil, fmt.Errorf("substring %q not found", sub)
		}
		return int64(utf8.RuneCountInString(s[:i])), nil
	}
	return nil, fmt.Errorf("unknown string method %q", e.name)
}

// pyCapitalize is Python's str.capitalize: first character upper-cased
// (title case), all the others lower-cased.
func pyCapitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToTitle(r)) + strings.ToLower(s[n:])
}

func asList(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case int32:
		return int(x), true
	case uint64:
		return int(x), true
	case float64:
		if x == float64(int(x)) {
			return int(x), true
		}
	}
	return 0, false
}

func equal(a, b any) bool {
	if ai, ok := toInt(a); ok {
		bi, ok := toInt(b)
		return ok && ai == bi
	}
	as, ok1 := a.(string)
	bs, ok2 := b.(string)
	return ok1 && ok2 && as == bs
}

// ---- parser ----

type exprParser struct {
	src string
	pos int
}

func (p *exprParser) errf(f string, a ...any) error {
	return fmt.Errorf("expression %q at %d: %s", p.src, p.pos, fmt.Sprintf(f, a...))
}

func (p *exprParser) skip() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n') {
		p.pos++
	}
}

func (p *exprParser) peek() byte {
	p.skip()
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *exprParser) parse() (expr, error) {
	e, err := p.pipe()
	if err != nil {
		return nil, err
	}
	if p.peek() != 0 {
		return nil, p.errf("unexpected %q", p.src[p.pos:])
	}
	return e, nil
}

func (p *exprParser) pipe() (expr, error) {
	e, err := p.postfix()
	if err != nil {
		return nil, err
	}
	for p.peek() == '|' {
		p.pos++
		p.skip()
		name := p.ident()
		if name == "" {
			return nil, p.errf("filter name expected")
		}
		c := callExpr{x: e, name: name}
		if p.peek() == '(' {
			if c.args, err = p.args(')'); err != nil {
				return nil, err
			}
		}
		e = c
	}
	return e, nil
}

func (p *exprParser) args(end byte) ([]expr, error) {
	p.pos++ // opening bracket
	var out []expr
	if p.peek() == end {
		p.pos++
		return out, nil
	}
	for {
		a, err := p.pipe()
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		switch p.peek() {
		case ',':
			p.pos++
		case end:
			p.pos++
			return out, nil
		default:
			return nil, p.errf("expected ',' or %q", end)
		}
	}
}

func (p *exprParser) postfix() (expr, error) {
	e, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch p.peek() {
		case '.':
			p.pos++
			name := p.ident()
			if name == "" {
				return nil, p.errf("attribute name expected")
			}
			if p.peek() == '(' {
				args, err := p.args(')')
				if err != nil {
					return nil, err
				}
				e = callExpr{x: e, name: name, args: args}
			} else {
				e = attrExpr{x: e, name: name}
			}
		case '[':
			p.pos++
			i, err := p.pipe()
			if err != nil {
				return nil, err
			}
			if p.peek() != ']' {
				return nil, p.errf("']' expected")
			}
			p.pos++
			e = indexExpr{x: e, i: i}
		default:
			return e, nil
		}
	}
}

func (p *exprParser) ident() string {
	p.skip()
	s := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || p.pos > s && c >= '0' && c <= '9' {
			p.pos++
			continue
		}
		break
	}
	return p.src[s:p.pos]
}

func (p *exprParser) primary() (expr, error) {
	c := p.peek()
	switch {
	case c == '[':
		items, err := p.args(']')
		if err != nil {
			return nil, err
		}
		return listExpr{items}, nil
	case c == '(':
		p.pos++
		e, err := p.pipe()
		if err != nil {
			return nil, err
		}
		if p.peek() != ')' {
			return nil, p.errf("')' expected")
		}
		p.pos++
		return e, nil
	case c == '\'' || c == '"':
		p.pos++
		var b strings.Builder
		for p.pos < len(p.src) && p.src[p.pos] != c {
			if p.src[p.pos] == '\\' && p.pos+1 < len(p.src) {
				p.pos++
				switch p.src[p.pos] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(p.src[p.pos])
				}
			} else {
				b.WriteByte(p.src[p.pos])
			}
			p.pos++
		}
		if p.pos >= len(p.src) {
			return nil, p.errf("unterminated string")
		}
		p.pos++
		return litExpr{b.String()}, nil
	case c == '-' || c >= '0' && c <= '9':
		s := p.pos
		p.pos++
		for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			p.pos++
		}
		n, err := strconv.ParseInt(p.src[s:p.pos], 10, 64)
		if err != nil {
			return nil, p.errf("bad number")
		}
		return litExpr{n}, nil
	}
	name := p.ident()
	switch name {
	case "":
		return nil, p.errf("expression expected")
	case "True":
		return litExpr{true}, nil
	case "False":
		return litExpr{false}, nil
	case "None":
		return litExpr{nil}, nil
	}
	return identExpr{name}, nil
}
