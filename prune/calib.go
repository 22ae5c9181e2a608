package prune

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// SampleSequences cuts calibration (or fitness, or fine-tuning) sequences of
// exactly nTokens tokens in total from documents.
//
//   - "first": the documents joined with "\n\n" and tokenized as a whole
//     without special tokens (as ppl does); its first nTokens tokens are cut
//     into consecutive windows of seqLen (nTokens rounded down to whole
//     windows). Deterministic, seed unused.
//   - "random": the reference's FineWeb-Edu sampler (paper-notes b.2): the
//     documents are shuffled with seed, each is tokenized without special
//     tokens, truncated to the tokens still needed and cut into pieces of
//     seqLen, the shorter remainder kept as its own sequence, until exactly
//     nTokens tokens are collected. Sequences have variable lengths ≤ seqLen.
//
// It is an error if the text has fewer tokens than asked for.
func SampleSequences(docs []string, tok tokenizer.Tokenizer, nTokens, seqLen int, sampler string, seed int64) ([][]int, error) {
	if seqLen < 1 {
		return nil, fmt.Errorf("sequence length must be positive, got %d", seqLen)
	}
	if nTokens < 1 {
		return nil, fmt.Errorf("token count must be positive, got %d", nTokens)
	}
	switch sampler {
	case "first":
		if nTokens < seqLen {
			return nil, fmt.Errorf("sampler first: %d tokens are fewer than one window of %d", nTokens, seqLen)
		}
		ids := tok.Encode(strings.Join(docs, "\n\n"))
		if len(ids) < seqLen {
			return nil, fmt.Errorf("sampler first: the text has %d tokens, shorter than one window of %d", len(ids), seqLen)
		}
		if len(ids) < nTokens {
			return nil, fmt.Errorf("sampler first: the text has %d tokens, fewer than the %d requested", len(ids), nTokens)
		}
		n := nTokens / seqLen
		out := make([][]int, n)
		for i := range out {
			out[i] = ids[i*seqLen : (i+1)*seqLen : (i+1)*seqLen]
		}
		return out, nil
	case "random":
		r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
		perm := r.Perm(len(docs))
		var out [][]int
		need := nTokens
		for _, di := range perm {
			if need == 0 {
				break
			}
			ids := tok.Encode(docs[di])
			if len(ids) > need {
				ids = ids[:need]
			}
			need -= len(ids)
			for len(ids) > seqLen {
				out = append(out, ids[:seqLen:seqLen])
				ids = ids[seqLen:]
			}
			if len(ids) > 0 {
				out = append(out, ids)
			}
		}
		if need > 0 {
			return nil, fmt.Errorf("sampler random: the %d documents have %d tokens, fewer than the %d requested", len(docs), nTokens-need, nTokens)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown sampler %q (want first or random)", sampler)
}
