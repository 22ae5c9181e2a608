package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
)

// ScoreBPE is the SentencePiece-style BPE of llama2.c's run.c: start from
// characters (or bytes via byte fallback) and repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring piece, leftmost on ties.
// It backs both llama2.c's tokenizer.bin and SentencePiece's tokenizer.model.
type ScoreBPE struct {
	pieces  []string
	scores  []float32
	lookup  map[string]int32 // pieces that characters and merges may produce
	byteIDs [256]int32       // id of "<0xNN>" per byte, -1 when absent
	space   string           // what a space is in the vocabulary: " " or "▁"
	unkID   int32
	bos     int
	eos     int
	maxLen  int    // llama2.c's max_token_length header
	hidden  []bool // ids Decode skips: BOS/EOS, SentencePiece control pieces
	addBOS  bool

	segOnce sync.Once
	seg     *segmenter

	mu        sync.Mutex
	pairCache map[uint64]bpeCandVal
}

type bpeCandVal struct {
	prio   float64
	merged int32
	ok     bool
}

// minScore is run.c's initial best_score: pairs scoring at or below it never merge.
const minScore = -1e10

// ParseLlama2cBin reads llama2.c's tokenizer.bin: int32 max_token_length,
// then per token float32 score, int32 length, bytes. The file does not store
// the vocabulary size (run.c takes it from the model), so every complete
// record up to EOF is a token. ids 0,1,2 are <unk>, BOS and EOS and byte b
// is id b+3, as in the Llama-2 export.
func ParseLlama2cBin(r io.Reader) (*ScoreBPE, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("max_token_length header: %w", truncated(err))
	}
	maxLen := int32(binary.LittleEndian.Uint32(hdr[:]))
	if maxLen <= 0 || maxLen > 1<<16 {
		return nil, fmt.Errorf("max_token_length %d out of range", maxLen)
	}
	t := &ScoreBPE{space: " ", unkID: 0, bos: 1, eos: 2, maxLen: int(maxLen)}
	buf := make([]byte, 8)
	for i := 0; ; i++ {
		n, err := io.ReadFull(r, buf)
		if err == io.EOF && n == 0 {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("token %d: score/length: %w", i, truncated(err))
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(buf[:4]))
		l := int32(binary.LittleEndian.Uint32(buf[4:]))
		if l < 0 || l > maxLen {
			return nil, fmt.Errorf("token %d: length %d outside 0..max_token_length %d", i, l, maxLen)
		}
		piece := make([]byte, l)
		if _, err := io.ReadFull(r, piece); err != nil {
			return nil, fmt.Errorf("token %d: %d bytes: %w", i, l, truncated(err))
		}
		t.pieces = append(t.pieces, string(piece))
		t.scores = append(t.scores, score)
		if len(t.pieces) > 1<<22 {
			return nil, errors.New("more than 4M tokens")
		}
	}
	if len(t.pieces) == 0 {
		return nil, errors.New("no tokens")
	}
	t.index(nil)
	// run.c hard-codes byte fallback as id byte+3 rather than looking it up.
	for b := range t.byteIDs {
		t.byteIDs[b] = -1
		if b+3 < len(t.pieces) {
			t.byteIDs[b] = int32(b + 3)
		}
	}
	if len(t.pieces) <= 2 {
		t.eos = -1
	}
	if len(t.pieces) <= 1 {
		t.bos = -1
	}
	t.hidden = make([]bool, len(t.pieces))
	for _, id := range []int{t.bos, t.eos} {
		if id >= 0 {
			t.hidden[id] = true
		}
	}
	t.addBOS = t.bos >= 0
	return t, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("file truncated")
	}
	return err
}

// index builds the lookup tables. mergeable, when non-nil, says which ids may
// be produced (SentencePiece excludes control and unused pieces); run.c looks
// up every piece. The first of duplicate pieces wins.
func (t *ScoreBPE) index(mergeable func(id int) bool) {
	t.lookup = make(map[string]int32, len(t.pieces))
	for i, p := range t.pieces {
		if mergeable != nil && !mergeable(i) {
			continue
		}
		if _, dup := t.lookup[p]; !dup {
			t.lookup[p] = int32(i)
		}
	}
	for b := range t.byteIDs {
		t.byteIDs[b] = -1
	}
	for i, p := range t.pieces {
		if b, ok := byteToken(p); ok && t.byteIDs[b] < 0 {
			t.byteIDs[b] = int32(i)
		}
	}
}

// buildSegmenter lists the merge pairs: every split of a piece that may be
// produced into two pieces (byte splits, empty sides included, since pieces
// are arbitrary bytes). Pairs are listed for every id spelling each side.
func (t *ScoreBPE) buildSegmenter() {
	ids := make(map[string][]int32, len(t.pieces))
	for id, p := range t.pieces {
		ids[p] = append(ids[p], int32(id))
	}
	t.seg = newSegmenter(len(t.pieces), func(id int32) string { return t.pieces[id] },
		func(yield func(a, b int32)) {
			for p, id := range t.lookup {
				if float64(t.scores[id]) <= minScore {
					continue
				}
				for i := 0; i <= len(p); i++ {
					for _, a := range ids[p[:i]] {
						for _, b := range ids[p[i:]] {
							yield(a, b)
						}
					}
				}
			}
		}, byteUnits)
}

func (t *ScoreBPE) pair(a, b int32) (float64, int32, bool) {
	key := pairKey(a, b)
	t.mu.Lock()
	v, hit := t.pairCache[key]
	t.mu.Unlock()
	if hit {
		return v.prio, v.merged, v.ok
	}
	id, ok := t.lookup[t.pieces[a]+t.pieces[b]]
	v = bpeCandVal{ok: ok && float64(t.scores[id]) > minScore}
	if v.ok {
		v.prio, v.merged = -float64(t.scores[id]), id // higher score merges first
	}
	t.mu.Lock()
	if t.pairCache == nil || len(t.pairCache) >= maxCacheSize {
		t.pairCache = make(map[uint64]bpeCandVal)
	}
	t.pairCache[key] = v
	t.mu.Unlock()
	return v.prio, v.merged, v.ok
}

// Encode follows run.c's encode without BOS/EOS: a dummy-prefix space for
// non-empty text, one symbol per UTF-8 character (byte fallback otherwise),
// then score-greedy merges. Unlike C it does not stop at a NUL byte.
func (t *ScoreBPE) Encode(text string) []int {
	if text == "" {
		return nil
	}
	if t.space != " " {
		text = strings.ReplaceAll(text, " ", t.space)
	}
	syms := make([]int32, 0, len(text)+1)
	if id, ok := t.lookup[t.space]; ok {
		syms = append(syms, id)
	} else {
		text = t.space + text // no piece for the prefix alone: let it merge
	}
	var buf []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, c)
		// Like run.c, gather up to 4 bytes of a UTF-8 sequence.
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		if id, ok := t.lookup[string(buf)]; ok {
			syms = append(syms, id)
		} else {
			for _, b := range buf {
				switch {
				case t.byteIDs[b] >= 0:
					syms = append(syms, t.byteIDs[b])
				case t.unkID >= 0:
					syms = append(syms, t.unkID)
				}
			}
		}
		buf = buf[:0]
	}
	t.segOnce.Do(t.buildSegmenter)
	syms = bpeMergeSegments(syms, t.pair, t.seg)
	ids := make([]int, len(syms))
	for i, s := range syms {
		ids[i] = int(s)
	}
	return ids
}

// Decode follows run.c's decode: BOS and EOS (and SentencePiece control
// pieces) are skipped, the leading space
// of the first piece (at the start or after BOS) is dropped, <0xNN> pieces
// become raw bytes.
func (t *ScoreBPE) Decode(ids []int) string {
	var sb strings.Builder
	prev := t.bos
	for _, id := range ids {
		if id < 0 || id >= len(t.pieces) {
			continue
		}
		if t.hidden[id] {
			prev = id
			continue
		}
		p := t.pieces[id]
		if b, ok := byteToken(p); ok {
			sb.WriteByte(b)
		} else {
			if t.space != " " {
				p = strings.ReplaceAll(p, t.space, " ")
			}
			if prev == t.bos {
				p = strings.TrimPrefix(p, " ")
			}
			sb.WriteString(p)
		}
		prev = id
	}
	return sb.String()
}

// Piece returns the string of an id ("" when out of range).
func (t *ScoreBPE) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Score returns the merge score of an id.
func (t *ScoreBPE) Score(id int) float32 {
	if id < 0 || id >= len(t.scores) {
		return 0
	}
	return t.scores[id]
}

// MaxTokenLength is the max_token_length header of a tokenizer.bin.
func (t *ScoreBPE) MaxTokenLength() int { return t.maxLen }

func (t *ScoreBPE) VocabSize() int { return len(t.pieces) }
func (t *ScoreBPE) BOS() int       { return t.bos }
func (t *ScoreBPE) EOS() int       { return t.eos }

// AddBOS is true for llama2.c, which always prepends BOS; for a
// tokenizer.model it follows add_bos_token (default true, as in Llama-2).
func (t *ScoreBPE) AddBOS() bool { return t.addBOS }
