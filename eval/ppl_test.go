package eval

import (
	"math"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// bigramLM is a fake Forwarder: the logits at a position depend only on the
// token there (logit[t] = 1 when t == tok+1 mod V), so results are checkable.
type bigramLM struct{ vocab int }

func (f bigramLM) Forward(_ backend.Backend, seqs [][]int) []float32 {
	var out []float32
	for _, s := range seqs {
		for _, t := range s {
			row := make([]float32, f.vocab)
			row[(t+1)%f.vocab] = 1
			out = append(out, row...)
		}
	}
	return out
}

func TestPerplexityIDs(t *testing.T) {
	V := 5
	ids := []int{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 3} // 13 tokens, tail of 1 dropped
	r, err := PerplexityIDs(bigramLM{V}, nil, V, ids, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Windows != 3 || r.Scored != 9 || r.Tokens != 13 {
		t.Fatalf("windows/scored/tokens = %d/%d/%d", r.Windows, r.Scored, r.Tokens)
	}
	// Every scored prediction is the +1 successor (the 1→3 pair is in the
	// dropped tail), so each has p = e/(e+V-1).
	lp := 1 - math.Log(math.E+float64(V-1))
	want := math.Exp(-lp)
	if math.Abs(r.PPL-want) > 1e-9 {
		t.Fatalf("ppl = %v, want %v", r.PPL, want)
	}
	if _, err := PerplexityIDs(bigramLM{V}, nil, V, ids[:3], 4, nil); err == nil {
		t.Fatal("expected an error for a text shorter than one window")
	}
}
