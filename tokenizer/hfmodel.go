package tokenizer

import (
	"fmt"
	"strings"
	"sync"
)

// bpeModel is the HF "BPE" model: a vocabulary, merges ranked by their
// position in the merges list, byte fallback and unknown-token handling.
type bpeModel struct {
	vocab        map[string]int32
	merges       map[uint64]mergeVal
	unkID        int32 // -1 when the model has no unk_token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int32 // ids of "<0xNN>", -1 when absent
	tokens       []string   // id -> token, for the segmenter
	segOnce      sync.Once
	seg          *segmenter

	mu    sync.Mutex         // guards cache: Encode may run concurrently
	cache map[string][]int32 // per pre-token results; HF caches words too
}

type mergeVal struct {
	rank   int32
	merged int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// maxCachedWord mirrors HF, which does not cache long words (a whole
// document when there is no pre-tokenizer).
const (
	maxCachedWord = 256
	maxCacheSize  = 1 << 16
)

func newBPEModel(vocab map[string]int32, merges [][2]string, unk string, hasUnk bool) (*bpeModel, error) {
	m := &bpeModel{vocab: vocab, merges: make(map[uint64]mergeVal, len(merges)), unkID: -1}
	if hasUnk {
		id, ok := vocab[unk]
		if !ok {
			return nil, fmt.Errorf("model.unk_token %q not in model.vocab", unk)
		}
		m.unkID = id
	}
	for i, mg := range merges {
		a, ok := vocab[mg[0]]
		if !ok {
			return nil, fmt.Errorf("model.merges[%d]: token %q not in model.vocab", i, mg[0])
		}
		b, ok := vocab[mg[1]]
		if !ok {
			return nil, fmt.Errorf("model.merges[%d]: token %q not in model.vocab", i, mg[1])
		}
		c, ok := vocab[mg[0]+mg[1]]
		if !ok {
			return nil, fmt.Errorf("model.merges[%d]: merged token %q not in model.vocab", i, mg[0]+mg[1])
		}
		// Like HF's HashMap collect, a repeated pair keeps the later rank.
		m.addMerge(a, b, int32(i), c)
	}
	for b := range m.byteIDs {
		id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]
		if !ok {
			id = -1
		}
		m.byteIDs[b] = id
	}
	return m, nil
}

func (m *bpeModel) addMerge(a, b, rank, merged int32) {
	m.merges[pairKey(a, b)] = mergeVal{rank: rank, merged: merged}
}

// segmenter is built on first use, after every merge is known (the tiktoken
// route adds merges after construction).
func (m *bpeModel) segmenter() *segmenter {
	m.segOnce.Do(func() {
		if m.tokens == nil {
			m.tokens = make([]string, 0, len(m.vocab))
			for tok, id := range m.vocab {
				for int(id) >= len(m.tokens) {
					m.tokens = append(m.tokens, "")
				}
				m.tokens[id] = tok
			}
		}
		m.seg = newSegmenter(len(m.tokens), func(id int32) string { return m.tokens[id] },
			func(yield func(a, b int32)) {
				for k := range m.merges {
					yield(int32(uint32(k>>32)), int32(uint32(k)))
				}
			}, runeUnits)
	})
	return m.seg
}

func (m *bpeModel) pair(a, b int32) (float64, int32, bool) {
	v, ok := m.merges[pairKey(a, b)]
	return float64(v.rank), v.merged, ok
}

// tokenize runs BPE on one pre-token and appends the ids to dst.
func (m *bpeModel) tokenize(dst []int, word string) []int {
	if word == "" {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, int(id))
		}
	}
	cacheable := len(word) <= maxCachedWord
	if cacheable {
		m.mu.Lock()
		ids, ok := m.cache[word]
		m.mu.Unlock()
		if ok {
			for _, id := range ids {
				dst = append(dst, int(id))
			}
			return dst
		}
	}
	syms := m.initialSymbols(word)
	if len(syms) > 64 {
		syms = bpeMergeSegments(syms, m.pair, m.segmenter())
	} else {
		syms = bpeMerge(syms, m.pair)
	}
	if cacheable {
		m.mu.Lock()
		if m.cache == nil || len(m.cache) >= maxCacheSize {
			m.cache = make(map[string][]int32)
		}
		m.cache[strings.Clone(word)] = syms
		m.mu.Unlock()
	}
	for _, id := range syms {
		dst = append(dst, int(id))
	}
	return dst
}

// initialSymbols splits word into one symbol per character, following HF's
// merge_word: unknown characters become their <0xNN> bytes when all of them
// exist, otherwise unk (consecutive unks fused when fuse_unk).
func (m *bpeModel) initialSymbols(word string) []int32 {
	syms := make([]int32, 0, len(word))
	pendingUnk := false
	for i := 0; i < len(word); {
		size := 1
		for i+size < len(word) && word[i+size]&0xC0 == 0x80 {
			size++
		}
		ch := word[i : i+size]
		i += size
		if id, ok := m.vocab[ch]; ok {
			if pendingUnk {
				syms = append(syms, m.unkID)
				pendingUnk = false
			}
			syms = append(syms, id)
			continue
		}
		if m.byteFallback {
			all := true
			for j := 0; j < len(ch); j++ {
				if m.byteIDs[ch[j]] < 0 {
					all = false
					break
				}
			}
			if all {
				// HF leaves a pending unk pending here, so it lands after
				// these bytes; only reachable with a partial byte vocabulary.
				for j := 0; j < len(ch); j++ {
					syms = append(syms, m.byteIDs[ch[j]])
				}
				continue
			}
		}
		if m.unkID < 0 {
			continue // HF drops characters it cannot represent
		}
		if pendingUnk && !m.fuseUnk {
			syms = append(syms, m.unkID)
		}
		pendingUnk = true
	}
	if pendingUnk {
		syms = append(syms, m.unkID)
	}
	return syms
}
