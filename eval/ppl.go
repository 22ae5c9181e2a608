package eval

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// PPLResult is the outcome of a perplexity run.
type PPLResult struct {
	PPL     float64 `json:"ppl"`
	NLL     float64 `json:"nll"`     // total negative log-likelihood (nats)
	Tokens  int     `json:"tokens"`  // tokens in the whole text
	Windows int     `json:"windows"` // windows of SeqLen tokens scored
	Scored  int     `json:"scored"`  // predicted tokens = Windows·(SeqLen−1)
	SeqLen  int     `json:"seq_len"`
}

// Forwarder is the part of *model.Model the evaluation code needs. A
// *model.Model is made resident on be's device once for the whole run and
// a device error (e.g. out of GPU memory) is returned; other Forwarders
// (test fakes) are called as they are.
type Forwarder interface {
	Forward(be backend.Backend, seqs [][]int) []float32
}

// residentForward returns the forward function of f on be: the resident
// weights' error-returning Forward for a model (and their release).
func residentForward(f Forwarder, be backend.Backend) (func([][]int) ([]float32, error), func(), error) {
	if m, ok := f.(*model.Model); ok {
		r, err := m.Upload(nn.DeviceFor(be))
		if err != nil {
			return nil, nil, err
		}
		return r.Forward, r.Release, nil
	}
	return func(seqs [][]int) ([]float32, error) { return f.Forward(be, seqs), nil }, func() {}, nil
}

// maxLogitFloats bounds the logits one Forward call may return (≈256 MiB).
const maxLogitFloats = 64 << 20

// Perplexity measures the perplexity of text with the GPTQ / SparseGPT /
// DarwinLM protocol: the whole text is tokenized without special tokens
// (no BOS), cut into consecutive non-overlapping windows of seqLen tokens
// (the incomplete tail is dropped), every window is run from position 0, and
// ppl = exp(total NLL / scored tokens), where each window scores its
// seqLen−1 next-token predictions. progress, if not nil, is called after each
// batch of windows with (windows done, windows total).
func Perplexity(m *model.Model, be backend.Backend, tok tokenizer.Tokenizer, text string, seqLen int, progress func(done, total int)) (PPLResult, error) {
	if m == nil {
		return PPLResult{}, fmt.Errorf("perplexity: nil model")
	}
	if seqLen <= 0 {
		seqLen = min(m.Cfg.MaxSeq, 2048)
	}
	if m.Cfg.MaxSeq > 0 && seqLen > m.Cfg.MaxSeq {
		return PPLResult{}, fmt.Errorf("perplexity: seq-len %d exceeds the model's maximum %d", seqLen, m.Cfg.MaxSeq)
	}
	return PerplexityIDs(m, be, m.Cfg.Vocab, tok.Encode(text), seqLen, progress)
}

// PerplexityIDs is Perplexity on already tokenized text.
func PerplexityIDs(f Forwarder, be backend.Backend, vocab int, ids []int, seqLen int, progress func(done, total int)) (PPLResult, error) {
	if seqLen < 2 {
		return PPLResult{}, fmt.Errorf("perplexity: seq-len must be at least 2, got %d", seqLen)
	}
	res := PPLResult{Tokens: len(ids), SeqLen: seqLen}
	n := len(ids) / seqLen
	if n == 0 {
		return res, fmt.Errorf("perplexity: text has %d tokens, fewer than one window of %d", len(ids), seqLen)
	}
	// Small batches keep the progress bar moving; 16 windows already give
	// the GEMMs thousands of rows.
	batch := max(1, min(16, maxLogitFloats/(seqLen*vocab)))
	forward, release, err := residentForward(f, be)
	if err != nil {
		return res, fmt.Errorf("perplexity: %w", err)
	}
	defer release()
	if progress != nil {
		progress(0, n)
	}
	for w0 := 0; w0 < n; w0 += batch {
		w1 := min(n, w0+batch)
		seqs := make([][]int, 0, w1-w0)
		for w := w0; w < w1; w++ {
			seqs = append(seqs, ids[w*seqLen:(w+1)*seqLen])
		}
		logits, err := forward(seqs)
		if err != nil {
			return res, fmt.Errorf("perplexity: windows %d–%d of %d: %w", w0+1, w1, n, err)
		}
		if len(logits) != len(seqs)*seqLen*vocab {
			return res, fmt.Errorf("perplexity: forward returned %d logits, want %d", len(logits), len(seqs)*seqLen*vocab)
		}
		// Windows in parallel; their sums are added in window order, so the
		// total does not depend on the scheduling.
		nll := make([]float64, len(seqs))
		nn.ParallelFor(len(seqs), func(s int) {
			base := s * seqLen
			for p := 0; p+1 < seqLen; p++ {
				nll[s] -= nn.LogSoftmaxAt(logits[(base+p)*vocab:(base+p+1)*vocab], seqs[s][p+1])
			}
		})
		for _, v := range nll {
			res.NLL += v
		}
		res.Windows = w1
		if progress != nil {
			progress(w1, n)
		}
	}
	res.Scored = res.Windows * (seqLen - 1)
	res.PPL = math.Exp(res.NLL / float64(res.Scored))
	return res, nil
}
