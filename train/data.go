package train

import (
	"fmt"
	"math/bits"

	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// Tokenize encodes each document with tokenizer.EncodeSpecial (BOS first
// when the tokenizer adds it) and concatenates them into one token stream.
// When the tokenizer adds no BOS but has an EOS, EOS is appended to each
// document instead, so documents stay separated. Empty documents are
// skipped.
func Tokenize(tok tokenizer.Tokenizer, docs []string) []int {
	var out []int
	sepEOS := !(tok.AddBOS() && tok.BOS() >= 0) && tok.EOS() >= 0
	for _, d := range docs {
		if d == "" {
			continue
		}
		out = append(out, tokenizer.EncodeSpecial(tok, d)...)
		if sepEOS {
			out = append(out, tok.EOS())
		}
	}
	return out
}

// Loader packs a token stream into consecutive sequences of SeqLen tokens
// (the incomplete tail is dropped) and serves batches of Batch sequences in
// an order that is a deterministic function of the seed: epoch e visits the
// sequences in the permutation drawn from PCG(seed, e) by Fisher–Yates.
// Its whole state is (Epoch, Pos), so checkpoints restore it exactly.
type Loader struct {
	Tokens        []int
	SeqLen, Batch int
	Seed          uint64
	Epoch, Pos    int // next sequence: perm(Epoch)[Pos]

	perm      []int
	permEpoch int
}

// NewLoader checks the sizes and returns a loader at epoch 0.
func NewLoader(tokens []int, seqLen, batch int, seed uint64) (*Loader, error) {
	if seqLen < 2 {
		return nil, fmt.Errorf("sequence length must be at least 2, got %d", seqLen)
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch must be at least 1, got %d", batch)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("the corpus is empty (no tokens)")
	}
	if len(tokens) < seqLen {
		return nil, fmt.Errorf("the corpus has %d tokens, fewer than one sequence of %d", len(tokens), seqLen)
	}
	return &Loader{Tokens: tokens, SeqLen: seqLen, Batch: batch, Seed: seed, permEpoch: -1}, nil
}

// NumSeqs is the number of packed sequences per epoch.
func (l *Loader) NumSeqs() int { return len(l.Tokens) / l.SeqLen }

// Next returns the next batch (continuing into the next epoch as needed).
func (l *Loader) Next() [][]int {
	n := l.NumSeqs()
	out := make([][]int, 0, l.Batch)
	for len(out) < l.Batch {
		if l.Pos >= n {
			l.Epoch++
			l.Pos = 0
		}
		if l.permEpoch != l.Epoch {
			l.perm = permutation(n, l.Seed, uint64(l.Epoch))
			l.permEpoch = l.Epoch
		}
		s := l.perm[l.Pos]
		out = append(out, l.Tokens[s*l.SeqLen:(s+1)*l.SeqLen])
		l.Pos++
	}
	return out
}

// permutation is a Fisher–Yates shuffle driven by a PCG stream; written out
// so the order does not depend on the standard library's Perm algorithm.
func permutation(n int, seed, stream uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r := newPCG(seed, stream)
	for i := n - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// pcg is PCG-XSL-RR 128/64 (the generator of math/rand/v2's PCG), kept here
// so the data order is fixed by this file alone.
type pcg struct{ hi, lo uint64 }

func newPCG(seed, stream uint64) *pcg {
	return &pcg{hi: seed, lo: stream ^ 0x9e3779b97f4a7c15}
}

func (p *pcg) next() uint64 {
	const (
		mulHi = 2549297995355413924
		mulLo = 4865540595714422341
		incHi = 6364136223846793005
		incLo = 1442695040888963407
	)
	// state = state * mul + inc (128-bit)
	hi, lo := bits.Mul64(p.lo, mulLo)
	hi += p.hi*mulLo + p.lo*mulHi
	lo, c := bits.Add64(lo, incLo, 0)
	hi += incHi + c
	p.lo, p.hi = lo, hi
	// XSL-RR output
	x := hi ^ lo
	rot := hi >> 58
	return x>>rot | x<<((64-rot)&63)
}
