package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// addedMatcher splits text around added tokens, leftmost-longest like the
// Aho-Corasick automaton HF builds. There are few added tokens, so a table of
// candidates per first byte is enough.
type addedMatcher struct {
	pats    []addedPattern
	byFirst [256][]int // indices into pats, longest first
}

type addedPattern struct {
	text string // what is searched: the content, normalized for normalized tokens
	tok  addedToken
}

func newAddedMatcher(pats []addedPattern) *addedMatcher {
	m := &addedMatcher{}
	for _, p := range pats {
		if p.text != "" {
			m.pats = append(m.pats, p)
		}
	}
	for i, p := range m.pats {
		m.byFirst[p.text[0]] = append(m.byFirst[p.text[0]], i)
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(m.pats[l[i]].text) > len(m.pats[l[j]].text) })
	}
	return m
}

// segment is a piece of text (id < 0) or an added token (id >= 0).
type segment struct {
	text  string
	id    int
	start int // byte offset in the string that was split
}

// split cuts s into text segments and added-token segments.
func (m *addedMatcher) split(s string) []segment {
	if m == nil || len(m.pats) == 0 {
		return []segment{{text: s, id: -1}}
	}
	var out []segment
	prevEnd := 0 // end of the previous token segment
	for i := 0; i < len(s); {
		p := m.longestAt(s, i)
		if p == nil {
			i++
			continue
		}
		start, stop := i, i+len(p.text)
		if p.tok.SingleWord && (endsWithWord(s[:start]) || startsWithWord(s[stop:])) {
			i = stop // the automaton has moved past a rejected match
			continue
		}
		if p.tok.LStrip {
			start = max(len(strings.TrimRightFunc(s[:start], unicode.IsSpace)), prevEnd)
		}
		if p.tok.RStrip {
			stop = len(s) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		if prevEnd < start {
			out = append(out, segment{text: s[prevEnd:start], id: -1, start: prevEnd})
		}
		out = append(out, segment{text: s[start:stop], id: p.tok.ID, start: start})
		prevEnd, i = stop, stop
	}
	if prevEnd < len(s) {
		out = append(out, segment{text: s[prevEnd:], id: -1, start: prevEnd})
	}
	return out
}

func (m *addedMatcher) longestAt(s string, i int) *addedPattern {
	for _, k := range m.byFirst[s[i]] {
		if strings.HasPrefix(s[i:], m.pats[k].text) {
			return &m.pats[k]
		}
	}
	return nil
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordRune(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordRune(r)
}
