package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// gpt2Split is a hand-written equivalent of regexMatches(gpt2Pattern, s):
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// The regex engine was about 70% of byte-level encoding time. \s is
// regexp2's Unicode class [\f\n\r\t\v\x85\p{Z}], which is unicode.IsSpace;
// TestGPT2SplitMatchesRegex checks the equivalence on every rune.
func gpt2Split(s string) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		j := gpt2MatchAt(s, i)
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

type runeClass uint8

const (
	clSpace runeClass = iota
	clLetter
	clNumber
	clOther
)

func classOf(r rune) runeClass {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	switch {
	case unicode.IsSpace(r):
		return clSpace
	case unicode.IsLetter(r):
		return clLetter
	case unicode.IsNumber(r):
		return clNumber
	}
	return clOther
}

var asciiClass = func() (t [utf8.RuneSelf]runeClass) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		switch {
		case r == ' ' || (r >= '\t' && r <= '\r'):
			t[r] = clSpace
		case unicode.IsLetter(r):
			t[r] = clLetter
		case unicode.IsNumber(r):
			t[r] = clNumber
		default:
			t[r] = clOther
		}
	}
	return t
}()

func runeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// gpt2MatchAt returns the end of the match starting at i (there always is
// one: the last alternatives cover whitespace, the others everything else).
func gpt2MatchAt(s string, i int) int {
	// 's|'t|'re|'ve|'m|'ll|'d (case-sensitive in GPT-2's pattern)
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	// ' ?X+' for X in letters, numbers, other: the optional space first.
	j := i
	if s[j] == ' ' && j+1 < len(s) {
		j++
	}
	r, n := runeAt(s, j)
	if c := classOf(r); c != clSpace {
		k := j + n
		for k < len(s) {
			r, n := runeAt(s, k)
			if classOf(r) != c {
				break
			}
			k += n
		}
		return k
	}
	// \s+(?!\S)|\s+: a whitespace run, leaving its last character to the
	// next word when a non-space follows and the run is longer than one.
	k := i
	last := i
	for k < len(s) {
		r, n := runeAt(s, k)
		if classOf(r) != clSpace {
			break
		}
		last = k
		k += n
	}
	if k < len(s) && last > i {
		return last
	}
	return k
}
