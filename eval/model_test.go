package eval

import (
	"math"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

const tinyModel = "hf:raincandy-u/TinyStories-656K"

var (
	tinyOnce sync.Once
	tinyM    *model.Model
	tinyTok  tokenizer.Tokenizer
	tinyErr  error
)

func loadTiny(t testing.TB) (*model.Model, tokenizer.Tokenizer, backend.Backend) {
	t.Helper()
	needMirror(t)
	tinyOnce.Do(func() { tinyM, tinyTok, tinyErr = model.Open(tinyModel, "") })
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	return tinyM, tinyTok, be
}

// bruteLL scores one request the slow, obvious way: lm-eval's _encode_pair
// written out again, one full forward of (ctx+cont)[-(L+1):][:-1] with
// model.Forward, log-softmax in float64.
func bruteLL(m *model.Model, be backend.Backend, tok tokenizer.Tokenizer, context, cont string) (float64, bool) {
	n := len(context) - len(strings.TrimRightFunc(context, unicode.IsSpace))
	if n > 0 {
		cont = context[len(context)-n:] + cont
		context = context[:len(context)-n]
	}
	whole := tok.Encode(context + cont)
	ctxIDs := tok.Encode(context)
	contIDs := whole[len(ctxIDs):]
	all := append(append([]int{}, ctxIDs...), contIDs...)
	L := m.Cfg.MaxSeq
	trunc := false
	if len(all) > L+1 {
		all = all[len(all)-(L+1):]
		trunc = true
	}
	in := all[:len(all)-1]
	logits := m.Forward(be, [][]int{in})
	V := m.Cfg.Vocab
	ll := 0.0
	for j := range contIDs {
		p := len(in) - len(contIDs) + j
		ll += refLogProb(logits[p*V:(p+1)*V], contIDs[j])
	}
	return ll, trunc
}

// refLogProb is log-softmax(row)[tok] in float64, written out in the test.
func refLogProb(row []float32, tok int) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	s := 0.0
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	return float64(row[tok]) - mx - math.Log(s)
}

// TestLoglikelihoodsBruteForce: on the first 20 documents of every task, the
// batched, prefix-sharing scorer equals one independent full forward per
// request to 1e-4.
func TestLoglikelihoodsBruteForce(t *testing.T) {
	m, tok, be := loadTiny(t)
	reg, err := LoadRegistry("")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"piqa", "arc_easy", "arc_challenge", "hellaswag", "boolq", "winogrande", "sciq", "logiqa", "mmlu"} {
		tk, _, _ := reg.Get(task)
		ins, err := tk.Build(BuildOptions{Limit: 20, NumFewshot: tk.Cfg.NumFewshot})
		if err != nil {
			t.Fatal(err)
		}
		if task == "mmlu" {
			ins = ins[:20]
		}
		var reqs []Request
		for i, in := range ins {
			for c := range in.Contexts {
				reqs = append(reqs, Request{in.Contexts[c], in.Conts[c], i})
			}
		}
		lm := NewModelLM(m, be, tok)
		lm.BatchTokens = 1500 // several batches, several questions per batch
		got, err := lm.Loglikelihoods(reqs)
		if err != nil {
			t.Fatal(err)
		}
		naive := NewModelLM(m, be, tok)
		naive.NoShare = true
		got2, err := naive.Loglikelihoods(reqs)
		if err != nil {
			t.Fatal(err)
		}
		worst, ntr := 0.0, 0
		for i, r := range reqs {
			want, tr := bruteLL(m, be, tok, r.Context, r.Continuation)
			d := math.Max(math.Abs(got[i].LL-want), math.Abs(got2[i].LL-want))
			worst = math.Max(worst, d)
			if d > 1e-4 || math.IsNaN(got[i].LL) {
				t.Errorf("%s request %d: ll %v (no sharing %v), brute force %v", task, i, got[i].LL, got2[i].LL, want)
			}
			if tr != got[i].Truncated {
				t.Errorf("%s request %d: truncated %v, brute force %v", task, i, got[i].Truncated, tr)
			}
			if tr {
				ntr++
			}
		}
		if lm.Truncations != ntr {
			t.Errorf("%s: %d truncations counted, %d expected", task, lm.Truncations, ntr)
		}
		if lm.ForwardTokens > naive.ForwardTokens {
			t.Errorf("%s: sharing ran %d token rows, more than the naive %d", task, lm.ForwardTokens, naive.ForwardTokens)
		}
		t.Logf("%-13s %3d requests, max |Δll| %.2e, truncated %d, token rows %d shared vs %d naive", task, len(reqs), worst, ntr, lm.ForwardTokens, naive.ForwardTokens)
	}
}

// TestPerplexityTiny checks eval.Perplexity against brute-force windows.
func TestPerplexityTiny(t *testing.T) {
	m, tok, be := loadTiny(t)
	_, rows, _, err := ReadRows("hf-dataset:roneneldan/TinyStories/default/validation_prefix")
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range rows[:60] {
		parts = append(parts, r["text"].(string))
	}
	text := strings.Join(parts, "\n\n")
	res, err := Perplexity(m, be, tok, text, 128, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(text)
	nll := 0.0
	for w := 0; w+128 <= len(ids); w += 128 {
		win := ids[w : w+128]
		lg := m.Forward(be, [][]int{win})
		for p := 0; p < 127; p++ {
			nll -= refLogProb(lg[p*m.Cfg.Vocab:(p+1)*m.Cfg.Vocab], win[p+1])
		}
	}
	want := math.Exp(nll / float64(res.Scored))
	if res.Tokens != len(ids) || res.Scored != len(ids)/128*127 || math.Abs(res.PPL-want) > 1e-6*want {
		t.Fatalf("ppl %v (tokens %d scored %d), want %v", res.PPL, res.Tokens, res.Scored, want)
	}
	t.Logf("TinyStories prefix, 60 chunks: %d tokens, ppl %.4f", res.Tokens, res.PPL)
}
