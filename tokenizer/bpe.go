package tokenizer

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
