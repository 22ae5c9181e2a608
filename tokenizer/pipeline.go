package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// This file parses and runs the HF pipeline components: normalizers,
// pre-tokenizers and decoders. Strings stand in for HF's NormalizedString:
// nothing here needs offsets except Metaspace's prepend_scheme "first", which
// only needs to know whether a piece starts the original text.

type normalizer func(string) string

// preTokenizer splits pieces further. first reports that pieces[0] starts at
// offset 0 of the original text.
type preTokenizer func(pieces []string, first bool) []string

// decoder maps token strings to token strings (HF's decode_chain).
type decoder func([]string) []string

// component is the union of the fields of every supported component.
type component struct {
	Type          string            `json:"type"`
	Normalizers   []json.RawMessage `json:"normalizers"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	Prepend       string            `json:"prepend"`
	Pattern       *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content          string `json:"content"`
	Behavior         string `json:"behavior"`
	Invert           bool   `json:"invert"`
	AddPrefixSpace   *bool  `json:"add_prefix_space"`
	UseRegex         *bool  `json:"use_regex"`
	Replacement      string `json:"replacement"`
	PrependScheme    string `json:"prepend_scheme"`
	Split            *bool  `json:"split"`
	IndividualDigits bool   `json:"individual_digits"`
	Start            int    `json:"start"`
	Stop             int    `json:"stop"`
	StripLeft        bool   `json:"strip_left"`
	StripRight       bool   `json:"strip_right"`
}

// isNull reports whether a raw JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

func parseComponent(raw json.RawMessage, path string) (*component, error) {
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &c, nil
}

// gpt2Pattern is the split regex of GPT-2's ByteLevel pre-tokenizer.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// compileRegex compiles an Oniguruma-style pattern. regexp2.None, not RE2
// mode, keeps \s and \d Unicode-aware as in the Rust library.
func compileRegex(pattern, path string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("%s: regex %q: %v", path, pattern, err)
	}
	return re, nil
}

func parseNormalizer(raw json.RawMessage, path string) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, path)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq []normalizer
		for i, r := range c.Normalizers {
			n, err := parseNormalizer(r, fmt.Sprintf("%s.normalizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return func(s string) string {
			for _, n := range seq {
				s = n(s)
			}
			return s
		}, nil
	case "Prepend":
		p := c.Prepend
		return func(s string) string {
			if s == "" {
				return s // HF prepends to non-empty strings only
			}
			return p + s
		}, nil
	case "Replace":
		return parseReplace(c, path)
	case "NFC":
		return norm.NFC.String, nil
	case "NFD":
		return norm.NFD.String, nil
	case "NFKC":
		return norm.NFKC.String, nil
	case "NFKD":
		return norm.NFKD.String, nil
	case "Lowercase":
		return strings.ToLower, nil
	case "Strip":
		l, r := c.StripLeft, c.StripRight
		return func(s string) string {
			if l {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if r {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
			return s
		}, nil
	default:
		return nil, fmt.Errorf("%s.type %q not supported", path, c.Type)
	}
}

// parseReplace builds the Replace normalizer (also used by the decoder).
func parseReplace(c *component, path string) (func(string) string, error) {
	if c.Pattern == nil {
		return nil, fmt.Errorf("%s.pattern missing", path)
	}
	content := c.Content
	switch {
	case c.Pattern.String != nil:
		old := *c.Pattern.String
		if old == "" {
			return func(s string) string { return s }, nil
		}
		return func(s string) string { return strings.ReplaceAll(s, old, content) }, nil
	case c.Pattern.Regex != nil:
		re, err := compileRegex(*c.Pattern.Regex, path+".pattern.Regex")
		if err != nil {
			return nil, err
		}
		return func(s string) string {
			out, err := re.ReplaceFunc(s, func(regexp2.Match) string { return content }, -1, -1)
			if err != nil {
				return s
			}
			return out
		}, nil
	}
	return nil, fmt.Errorf("%s.pattern: neither String nor Regex", path)
}

func parsePreTokenizer(raw json.RawMessage, path string) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, path)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq []preTokenizer
		for i, r := range c.Pretokenizers {
			p, err := parsePreTokenizer(r, fmt.Sprintf("%s.pretokenizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if p != nil {
				seq = append(seq, p)
			}
		}
		return func(pieces []string, first bool) []string {
			for _, p := range seq {
				pieces = p(pieces, first)
			}
			return pieces
		}, nil
	case "Split":
		if c.Pattern == nil {
			return nil, fmt.Errorf("%s.pattern missing", path)
		}
		beh, err := parseBehavior(c.Behavior, path)
		if err != nil {
			return nil, err
		}
		var find func(string) [][2]int
		switch {
		case c.Pattern.String != nil:
			lit := *c.Pattern.String
			find = func(s string) [][2]int { return literalMatches(lit, s) }
		case c.Pattern.Regex != nil:
			re, err := compileRegex(*c.Pattern.Regex, path+".pattern.Regex")
			if err != nil {
				return nil, err
			}
			find = func(s string) [][2]int { return regexMatches(re, s) }
		default:
			return nil, fmt.Errorf("%s.pattern: neither String nor Regex", path)
		}
		invert := c.Invert
		return eachPiece(func(s string, _ bool, out []string) []string {
			return splitSpans(s, find(s), beh, invert, out)
		}), nil
	case "ByteLevel":
		addPrefix := c.AddPrefixSpace != nil && *c.AddPrefixSpace
		useRegex := c.UseRegex == nil || *c.UseRegex
		return eachPiece(func(s string, _ bool, out []string) []string {
			// HF prepends per piece, so in a Sequence every piece gets one.
			if addPrefix && !strings.HasPrefix(s, " ") {
				s = " " + s
			}
			if !useRegex {
				return append(out, byteLevelString(s))
			}
			start := len(out)
			out = splitSpans(s, gpt2Split(s), behIsolated, false, out)
			for i := start; i < len(out); i++ {
				out[i] = byteLevelString(out[i])
			}
			return out
		}), nil
	case "Metaspace":
		return parseMetaspacePre(c, path)
	case "Digits":
		isDigit := func(r rune) bool { return unicode.IsNumber(r) }
		beh := behContiguous
		if c.IndividualDigits {
			beh = behIsolated
		}
		return eachPiece(func(s string, _ bool, out []string) []string {
			return splitSpans(s, runeMatches(s, isDigit), beh, false, out)
		}), nil
	case "Whitespace":
		re := regexp2.MustCompile(`\w+|[^\w\s]+`, regexp2.None)
		return eachPiece(func(s string, _ bool, out []string) []string {
			for _, sp := range regexMatches(re, s) {
				out = append(out, s[sp[0]:sp[1]])
			}
			return out
		}), nil
	case "WhitespaceSplit":
		return eachPiece(func(s string, _ bool, out []string) []string {
			return append(out, strings.FieldsFunc(s, unicode.IsSpace)...)
		}), nil
	case "Punctuation":
		beh := behIsolated
		if c.Behavior != "" {
			if beh, err = parseBehavior(c.Behavior, path); err != nil {
				return nil, err
			}
		}
		isPunct := func(r rune) bool {
			return (r < 0x80 && unicode.IsPrint(r) && !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' ') || unicode.IsPunct(r)
		}
		return eachPiece(func(s string, _ bool, out []string) []string {
			return splitSpans(s, runeMatches(s, isPunct), beh, false, out)
		}), nil
	default:
		return nil, fmt.Errorf("%s.type %q not supported", path, c.Type)
	}
}

func parseMetaspacePre(c *component, path string) (preTokenizer, error) {
	rep, scheme, err := metaspaceOptions(c, path)
	if err != nil {
		return nil, err
	}
	split := c.Split == nil || *c.Split
	return eachPiece(func(s string, first bool, out []string) []string {
		s = strings.ReplaceAll(s, " ", rep)
		if !strings.HasPrefix(s, rep) && (scheme == "always" || (scheme == "first" && first)) {
			s = rep + s
		}
		if !split {
			return append(out, s)
		}
		return splitSpans(s, literalMatches(rep, s), behMergedWithNext, false, out)
	}), nil
}

func metaspaceOptions(c *component, path string) (rep, scheme string, err error) {
	rep = c.Replacement
	if rep == "" {
		rep = "▁"
	}
	scheme = c.PrependScheme
	if scheme == "" {
		scheme = "always"
		if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			scheme = "never" // legacy files spell it add_prefix_space
		}
	}
	switch scheme {
	case "always", "first", "never":
		return rep, scheme, nil
	}
	return "", "", fmt.Errorf("%s.prepend_scheme %q not supported", path, scheme)
}

// eachPiece lifts a per-piece function to a preTokenizer.
func eachPiece(f func(s string, first bool, out []string) []string) preTokenizer {
	return func(pieces []string, first bool) []string {
		out := make([]string, 0, len(pieces))
		for i, p := range pieces {
			out = f(p, first && i == 0, out)
		}
		return out
	}
}

type behavior int

const (
	behIsolated behavior = iota
	behRemoved
	behMergedWithPrevious
	behMergedWithNext
	behContiguous
)

func parseBehavior(s, path string) (behavior, error) {
	switch s {
	case "Isolated":
		return behIsolated, nil
	case "Removed":
		return behRemoved, nil
	case "MergedWithPrevious":
		return behMergedWithPrevious, nil
	case "MergedWithNext":
		return behMergedWithNext, nil
	case "Contiguous":
		return behContiguous, nil
	}
	return 0, fmt.Errorf("%s.behavior %q not supported", path, s)
}

// splitSpans cuts s at the given match spans (byte offsets, increasing) with
// HF's SplitDelimiterBehavior semantics and appends the non-empty pieces.
func splitSpans(s string, matches [][2]int, beh behavior, invert bool, out []string) []string {
	type span struct {
		a, b  int
		match bool
	}
	spans := make([]span, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if prev < m[0] {
			spans = append(spans, span{prev, m[0], invert})
		}
		spans = append(spans, span{m[0], m[1], !invert})
		prev = m[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), invert})
	}
	var res []span
	switch beh {
	case behIsolated:
		res = spans
	case behRemoved:
		for _, sp := range spans {
			if !sp.match {
				res = append(res, sp)
			}
		}
	case behMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(res) > 0 {
				res[len(res)-1].b = sp.b
			} else {
				res = append(res, sp)
			}
			prevMatch = sp.match
		}
	case behMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(res) > 0 {
				res[len(res)-1].a = sp.a
			} else {
				res = append(res, sp)
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(res)-1; i < j; i, j = i+1, j-1 {
			res[i], res[j] = res[j], res[i]
		}
	case behContiguous:
		prevMatch := false
		for _, sp := range spans {
			if sp.match == prevMatch && len(res) > 0 {
				res[len(res)-1].b = sp.b
			} else {
				res = append(res, sp)
			}
			prevMatch = sp.match
		}
	}
	for _, sp := range res {
		if sp.a < sp.b {
			out = append(out, s[sp.a:sp.b])
		}
	}
	return out
}

// regexMatches returns the byte spans of the non-overlapping matches of re.
// regexp2 reports positions in runes, so they are converted as we go; s must
// be valid UTF-8 (Encode guarantees it).
func regexMatches(re *regexp2.Regexp, s string) [][2]int {
	runes := []rune(s)
	var out [][2]int
	ri, bi := 0, 0
	toByte := func(r int) int {
		for ri < r && ri < len(runes) {
			bi += utf8.RuneLen(runes[ri])
			ri++
		}
		return bi
	}
	m, err := re.FindRunesMatch(runes)
	for m != nil && err == nil {
		a := toByte(m.Index)
		b := toByte(m.Index + m.Length)
		out = append(out, [2]int{a, b})
		m, err = re.FindNextMatch(m)
	}
	return out
}

func literalMatches(lit, s string) [][2]int {
	if lit == "" {
		return nil
	}
	var out [][2]int
	for off := 0; ; {
		i := strings.Index(s[off:], lit)
		if i < 0 {
			return out
		}
		out = append(out, [2]int{off + i, off + i + len(lit)})
		off += i + len(lit)
	}
}

// runeMatches returns one span per rune satisfying f.
func runeMatches(s string, f func(rune) bool) [][2]int {
	var out [][2]int
	for i, r := range s {
		if f(r) {
			out = append(out, [2]int{i, i + utf8.RuneLen(r)})
		}
	}
	return out
}

func parseDecoder(raw json.RawMessage, path string) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, path)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		var seq []decoder
		for i, r := range c.Decoders {
			d, err := parseDecoder(r, fmt.Sprintf("%s.decoders[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if d != nil {
				seq = append(seq, d)
			}
		}
		return func(toks []string) []string {
			for _, d := range seq {
				toks = d(toks)
			}
			return toks
		}, nil
	case "ByteLevel":
		return decodeByteLevel, nil
	case "Replace":
		f, err := parseReplace(c, path)
		if err != nil {
			return nil, err
		}
		return func(toks []string) []string {
			for i, t := range toks {
				toks[i] = f(t)
			}
			return toks
		}, nil
	case "ByteFallback":
		return decodeByteFallback, nil
	case "Fuse":
		return func(toks []string) []string { return []string{strings.Join(toks, "")} }, nil
	case "Strip":
		return parseStripDecoder(c, path)
	case "Metaspace":
		rep, scheme, err := metaspaceOptions(c, path)
		if err != nil {
			return nil, err
		}
		return func(toks []string) []string {
			for i, t := range toks {
				if i == 0 && scheme != "never" {
					// The prefix added at encode time goes. Only a leading
					// one, as in the JS oracle and older Rust releases.
					t = strings.TrimPrefix(t, rep)
				}
				toks[i] = strings.ReplaceAll(t, rep, " ")
			}
			return toks
		}, nil
	default:
		return nil, fmt.Errorf("%s.type %q not supported", path, c.Type)
	}
}

func parseStripDecoder(c *component, path string) (decoder, error) {
	_, size := utf8.DecodeRuneInString(c.Content)
	if size == 0 || size != len(c.Content) {
		return nil, fmt.Errorf("%s.content %q: want one character", path, c.Content)
	}
	if c.Start < 0 || c.Stop < 0 {
		return nil, fmt.Errorf("%s: negative start/stop", path)
	}
	start, stop := c.Start, c.Stop
	return func(toks []string) []string {
		for i, t := range toks {
			for n := 0; n < start && strings.HasPrefix(t, c.Content); n++ {
				t = t[size:]
			}
			for n := 0; n < stop && strings.HasSuffix(t, c.Content); n++ {
				t = t[:len(t)-size]
			}
			toks[i] = t
		}
		return toks
	}, nil
}

// decodeByteLevel maps byte-level runes back to bytes; tokens outside the
// alphabet (added tokens) pass through as their UTF-8 bytes, as in HF.
func decodeByteLevel(toks []string) []string {
	var buf []byte
	for _, t := range toks {
		if b, ok := byteLevelBytes(t); ok {
			buf = append(buf, b...)
		} else {
			buf = append(buf, t...)
		}
	}
	return []string{strings.ToValidUTF8(string(buf), "\uFFFD")}
}

// byteToken parses "<0xNN>".
func byteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

// decodeByteFallback joins runs of <0xNN> tokens into text; an invalid UTF-8
// run becomes one U+FFFD per byte token, as in HF.
func decodeByteFallback(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := byteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}
