package eval

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// Request asks for the log-likelihood of Continuation given Context.
// Adjacent requests with the same Group (the choices of one question) are
// scored together, sharing the forward pass of their common token prefix.
type Request struct {
	Context      string
	Continuation string
	Group        int
}

// Result is the score of one request.
type Result struct {
	LL         float64 // Σ log p(continuation tokens | preceding tokens)
	Greedy     bool    // every continuation token is the argmax
	Truncated  bool    // the input was left-truncated to the model's length
	CtxTokens  int     // context tokens (before truncation)
	ContTokens int     // continuation tokens
}

// LM scores requests. Implementations: *ModelLM, and fakes in tests.
type LM interface {
	Loglikelihoods(reqs []Request) ([]Result, error)
}

// ModelLM scores requests with a model, as lm-eval's HFLM does.
type ModelLM struct {
	M   *model.Model
	Be  backend.Backend
	Tok tokenizer.Tokenizer
	// AddBOS prepends BOS to the context (lm-eval ≥ 0.4.9.2 with Llama
	// tokenizers); the 2024-25 harness DarwinLM used adds none.
	AddBOS bool
	// MaxLen is the model length for truncation (default M.Cfg.MaxSeq).
	MaxLen int
	// BatchTokens bounds the token rows of one forward pass (default 4096).
	BatchTokens int
	// BatchGroups bounds the questions (request groups) of one forward
	// pass (0: only BatchTokens bounds it).
	BatchGroups int
	// NoShare scores every request on its own (no prefix sharing); for
	// benchmarks and checks.
	NoShare bool
	// Progress, if set, is called with (requests done, total).
	Progress func(done, total int)

	// Counters, accumulated over calls.
	Truncations   int   // requests whose input was left-truncated
	ForwardTokens int64 // token rows run through the decoder
	// EmptyContinuations counts requests whose continuation got no tokens
	// (scored 0, as lm-eval does).
	EmptyContinuations int
}

// NewModelLM returns a scorer over m.
func NewModelLM(m *model.Model, be backend.Backend, tok tokenizer.Tokenizer) *ModelLM {
	return &ModelLM{M: m, Be: be, Tok: tok}
}

// EncodePair is lm-eval's _encode_pair: trailing whitespace of the context
// moves to the front of the continuation; the continuation's tokens are
// those of encode(context+continuation) after len(encode(context)).
func EncodePair(tok tokenizer.Tokenizer, context, continuation string, addBOS bool) (ctx, cont []int) {
	trimmed := strings.TrimRightFunc(context, unicode.IsSpace)
	if n := len(context) - len(trimmed); n > 0 {
		continuation = context[len(trimmed):] + continuation
		context = trimmed
	}
	whole := tok.Encode(context + continuation)
	ctx = tok.Encode(context)
	if len(ctx) > len(whole) {
		cont = nil
	} else {
		cont = whole[len(ctx):]
	}
	if addBOS && tok.BOS() >= 0 {
		ctx = append([]int{tok.BOS()}, ctx...)
	}
	if len(ctx) == 0 { // lm-eval: an empty context becomes [prefix_token_id]
		p := tok.BOS()
		if p < 0 {
			p = tok.EOS()
		}
		ctx = []int{p}
	}
	return ctx, cont
}

// scoreItem is one request after tokenization.
type scoreItem struct {
	in   []int // model input: (ctx+cont)[-(L+1):][:-1]
	cont []int
}

// tree is a set of inputs sharing a token prefix: the prefix rows are run
// once and each suffix attends to the prefix's keys and values.
type tree struct {
	items  []int // request indices
	prefix []int
	suffix [][]int // per item, in[len(prefix):]
}

func (t *tree) rows() int {
	n := len(t.prefix)
	for _, s := range t.suffix {
		n += len(s)
	}
	return n
}

// Loglikelihoods implements LM.
func (lm *ModelLM) Loglikelihoods(reqs []Request) ([]Result, error) {
	L := lm.MaxLen
	if L <= 0 {
		L = lm.M.Cfg.MaxSeq
	}
	if L <= 0 {
		L = 2048
	}
	budget := lm.BatchTokens
	if budget <= 0 {
		budget = 4096
	}
	res := make([]Result, len(reqs))
	items := make([]scoreItem, len(reqs))
	for i, r := range reqs {
		ctx, cont := EncodePair(lm.Tok, r.Context, r.Continuation, lm.AddBOS)
		if len(cont) == 0 {
			// encode(ctx+cont) is no longer than encode(ctx) (a merge across
			// the boundary). lm-eval then scores no tokens: ll = 0.
			lm.EmptyContinuations++
			res[i] = Result{LL: 0, Greedy: true, CtxTokens: len(ctx)}
			items[i] = scoreItem{}
			continue
		}
		if len(cont) > L {
			return nil, fmt.Errorf("request %d: continuation has %d tokens, more than the model length %d", i, len(cont), L)
		}
		all := append(append(make([]int, 0, len(ctx)+len(cont)), ctx...), cont...)
		res[i].CtxTokens, res[i].ContTokens = len(ctx), len(cont)
		if len(all) > L+1 {
			all = all[len(all)-(L+1):]
			res[i].Truncated = true
			lm.Truncations++
		}
		items[i] = scoreItem{in: all[:len(all)-1], cont: cont}
	}
	// Build trees: adjacent requests of the same group share a prefix.
	var trees []*tree
	for i := 0; i < len(reqs); {
		if len(items[i].cont) == 0 {
			i++
			continue
		}
		j := i + 1
		if !lm.NoShare {
			for j < len(reqs) && reqs[j].Group == reqs[i].Group && len(items[j].cont) > 0 {
				j++
			}
		}
		t := &tree{}
		p := len(items[i].in)
		for k := i; k < j; k++ {
			t.items = append(t.items, k)
			p = min(p, lcp(items[i].in, items[k].in))
		}
		t.prefix = items[i].in[:p]
		for k := i; k < j; k++ {
			t.suffix = append(t.suffix, items[k].in[p:])
		}
		trees = append(trees, t)
		i = j
	}
	done := 0
	for _, it := range items {
		if len(it.cont) == 0 {
			done++
		}
	}
	for b := 0; b < len(trees); {
		e, rows := b, 0
		for e < len(trees) && (e == b || rows+trees[e].rows() <= budget && (lm.BatchGroups <= 0 || e-b < lm.BatchGroups)) {
			rows += trees[e].rows()
			e++
		}
		if err := lm.runTrees(trees[b:e], items, res); err != nil {
			return nil, err
		}
		lm.ForwardTokens += int64(rows)
		for _, t := range trees[b:e] {
			done += len(t.items)
		}
		if lm.Progress != nil {
			lm.Progress(done, len(reqs))
		}
		b = e
	}
	return res, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func lcp(a, b []int) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// runTrees runs a batch of trees and fills the results of their items.
// Row layout per tree: prefix rows, then each suffix's rows. Every row gets
// exactly the computation it would get in Forward(prefix+suffix): the same
// position, and attention over the same keys and values.
func (lm *ModelLM) runTrees(trees []*tree, items []scoreItem, res []Result) error {
	m := lm.M
	c := m.Cfg
	H := c.Hidden
	// One root segment per prefix, its suffixes as child segments; the model
	// computes every row exactly as in an unshared forward pass. An empty
	// prefix makes each suffix an independent sequence.
	var segs []model.Segment
	for _, t := range trees {
		parent := -1
		if len(t.prefix) > 0 {
			parent = len(segs)
			segs = append(segs, model.Segment{Tokens: t.prefix, Parent: -1})
		}
		for _, s := range t.suffix {
			segs = append(segs, model.Segment{Tokens: s, Parent: parent})
		}
	}
	// The weights are made resident once for the batch (on the CPU the
	// views are the model's slices).
	r, err := m.Upload(nn.DeviceFor(lm.Be))
	if err != nil {
		return err
	}
	defer r.Release()
	x, _, err := r.HiddenSegments(segs)
	if err != nil {
		return err
	}
	// Gather the hidden rows that predict continuation tokens.
	type need struct{ item, pos int }
	var needs []need
	var sel []float32
	r0 := 0
	for _, t := range trees {
		P := len(t.prefix)
		sufStart := make([]int, len(t.suffix))
		o := r0 + P
		for j, s := range t.suffix {
			sufStart[j] = o
			o += len(s)
		}
		for j, it := range t.items {
			in := items[it].in
			for p := len(in) - len(items[it].cont); p < len(in); p++ {
				row := r0 + p
				if p >= P {
					row = sufStart[j] + p - P
				}
				sel = append(sel, x[row*H:(row+1)*H]...)
				needs = append(needs, need{it, p})
			}
			res[it].LL, res[it].Greedy = 0, true
		}
		r0 = o
	}
	V := c.Vocab
	for s := 0; s < len(needs); s += 256 {
		e := min(len(needs), s+256)
		logits, err := r.Logits(sel[s*H:e*H], e-s)
		if err != nil {
			return err
		}
		for i := s; i < e; i++ {
			nd := needs[i]
			it := &items[nd.item]
			// Position p predicts token in[p+1], which lies in the continuation.
			tokIdx := nd.pos + 1 - (len(it.in) + 1 - len(it.cont))
			tok := it.cont[tokIdx]
			row := logits[(i-s)*V : (i-s+1)*V]
			res[nd.item].LL += nn.LogSoftmaxAt(row, tok)
			if argmax(row) != tok {
				res[nd.item].Greedy = false
			}
		}
	}
	return nil
}

func argmax(row []float32) int {
	b := 0
	for i, v := range row {
		if v > row[b] {
			b = i
		}
	}
	return b
}
