package tokenizer

import "unicode/utf8"

// This file holds the merge loop shared by every BPE flavour in the package:
// HF rank-ordered merges, tiktoken ranks and SentencePiece/llama2.c scores.
// It keeps the symbols in a doubly linked list and the candidate pairs in a
// binary heap, so a word of n symbols costs O(n log n) instead of the O(n^2)
// rescans of the reference implementations. Llama-2-style tokenizer.json files
// have no pre-tokenizer, so a whole document is a single "word".

// pairFunc reports whether symbols a and b merge, with the merge's priority
// (lower merges first) and the id of the merged symbol.
type pairFunc func(a, b int32) (prio float64, merged int32, ok bool)

type bpeSym struct {
	id         int32 // -1 once merged into its left neighbour
	prev, next int32 // indices in the symbol slice, -1 at the ends
}

type bpeCand struct {
	prio        float64
	pos         int32 // index of the left symbol
	left, right int32 // ids the pair had when queued; stale entries are skipped
	merged      int32
}

// less orders candidates by priority, then leftmost first: both HF
// (rank, pos) and SentencePiece/run.c (best score, first pair) break ties by
// position, and positions keep the list order because merges keep the left index.
func (c bpeCand) less(d bpeCand) bool {
	if c.prio != d.prio {
		return c.prio < d.prio
	}
	return c.pos < d.pos
}

type candHeap []bpeCand

func (h *candHeap) push(c bpeCand) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() bpeCand {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && s[r].less(s[l]) {
			m = r
		}
		if !s[m].less(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// segmenter finds boundaries that no merge can ever cross, so that a long
// input splits into independent segments. Merges only join adjacent symbols
// and ties break by position, so merging each segment on its own gives the
// same result, with small, cache-friendly heaps. This matters for
// Llama-2-style files, which have no pre-tokenizer: a whole document is one
// word, and a heap over millions of pairs is slow.
//
// A merge that crosses the boundary between initial symbols a|b joins a left
// symbol whose text ends with a's last character and a right symbol whose
// text starts with b's first one. So when no merge pair (A, B) has that
// (last of A, first of B), the boundary is never crossed; nor is any
// boundary next to a symbol that occurs in no merge at all.
type segmenter struct {
	mergeable   []bool // per id: occurs in some merge pair
	first, last []int32
	cross       map[uint64]struct{} // (last unit of A, first unit of B) per merge pair
}

// newSegmenter builds a segmenter from the merge pairs; text gives each id's
// string and unit splits a string into its first and last unit (a rune for
// HF vocabularies, a byte for SentencePiece pieces), -1 when empty.
func newSegmenter(n int, text func(id int32) string, pairs func(yield func(a, b int32)), unit func(string) (int32, int32)) *segmenter {
	s := &segmenter{mergeable: make([]bool, n), first: make([]int32, n), last: make([]int32, n), cross: map[uint64]struct{}{}}
	for id := range n {
		s.first[id], s.last[id] = unit(text(int32(id)))
	}
	pairs(func(a, b int32) {
		if int(a) >= n || int(b) >= n || a < 0 || b < 0 {
			return
		}
		s.mergeable[a], s.mergeable[b] = true, true
		s.cross[uint64(uint32(s.last[a]))<<32|uint64(uint32(s.first[b]))] = struct{}{}
	})
	return s
}

func runeUnits(t string) (int32, int32) {
	if t == "" {
		return -1, -1
	}
	f, _ := utf8.DecodeRuneInString(t)
	l, _ := utf8.DecodeLastRuneInString(t)
	return f, l
}

func byteUnits(t string) (int32, int32) {
	if t == "" {
		return -1, -1
	}
	return int32(t[0]), int32(t[len(t)-1])
}

func (s *segmenter) canCross(a, b int32) bool {
	if int(a) >= len(s.mergeable) || int(b) >= len(s.mergeable) || !s.mergeable[a] || !s.mergeable[b] {
		return false
	}
	la, fb := s.last[a], s.first[b]
	if la < 0 || fb < 0 {
		return true // an empty piece: no conclusion
	}
	_, ok := s.cross[uint64(uint32(la))<<32|uint64(uint32(fb))]
	return ok
}

// bpeMergeSegments is bpeMerge applied segment by segment; ids is reused as
// the output buffer (a merged segment never outgrows its input).
func bpeMergeSegments(ids []int32, pair pairFunc, seg *segmenter) []int32 {
	out := ids[:0]
	start := 0
	for i := 1; i <= len(ids); i++ {
		if i < len(ids) && seg.canCross(ids[i-1], ids[i]) {
			continue
		}
		out = append(out, bpeMerge(ids[start:i], pair)...)
		start = i
	}
	return out
}

// bpeMerge applies merges to ids until no pair merges and returns the result.
// ids is reused as the output buffer.
func bpeMerge(ids []int32, pair pairFunc) []int32 {
	n := len(ids)
	if n < 2 {
		return ids
	}
	syms := make([]bpeSym, n)
	for i := range syms {
		syms[i] = bpeSym{id: ids[i], prev: int32(i - 1), next: int32(i + 1)}
	}
	syms[n-1].next = -1
	h := make(candHeap, 0, n)
	for i := 0; i < n-1; i++ {
		if p, m, ok := pair(ids[i], ids[i+1]); ok {
			h.push(bpeCand{prio: p, pos: int32(i), left: ids[i], right: ids[i+1], merged: m})
		}
	}
	for len(h) > 0 {
		c := h.pop()
		l := &syms[c.pos]
		if l.id != c.left || l.next < 0 {
			continue
		}
		r := &syms[l.next]
		if r.id != c.right {
			continue
		}
		l.id = c.merged
		r.id = -1
		l.next = r.next
		if l.next >= 0 {
			syms[l.next].prev = c.pos
		}
		if l.prev >= 0 {
			pl := syms[l.prev].id
			if p, m, ok := pair(pl, l.id); ok {
				h.push(bpeCand{prio: p, pos: l.prev, left: pl, right: l.id, merged: m})
			}
		}
		if l.next >= 0 {
			nr := syms[l.next].id
			if p, m, ok := pair(l.id, nr); ok {
				h.push(bpeCand{prio: p, pos: c.pos, left: l.id, right: nr, merged: m})
			}
		}
	}
	out := ids[:0]
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

// byteToRune is GPT-2's bytes_to_unicode table: printable bytes map to
// themselves, the rest to U+0100 and up, so every byte is a visible rune.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = rune(256 + n)
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// byteLevelString maps the bytes of s to GPT-2's byte-level alphabet.
func byteLevelString(s string) string {
	buf := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		buf[i] = byteToRune[s[i]]
	}
	return string(buf)
}

// byteLevelBytes inverts byteLevelString; ok is false when s holds a rune
// outside the alphabet (an added token such as "<|endoftext|>").
func byteLevelBytes(s string) (b []byte, ok bool) {
	b = make([]byte, 0, len(s))
	for _, r := range s {
		c, ok := runeToByte[r]
		if !ok {
			return nil, false
		}
		b = append(b, c)
	}
	return b, true
}
