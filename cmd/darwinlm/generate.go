package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

func init() {
	var mf modelFlags
	var prompt string
	var maxTokens int
	var temperature, topP float64
	var seed uint64
	c := &cobra.Command{
		Use:   "generate [PROMPT]",
		Short: "Generate text from a prompt (greedy unless --temperature is given)",
		Long: `generate continues PROMPT (the argument, or --prompt; BOS is added as the
tokenizer config says; no prompt starts from BOS alone) and prints the text to
stdout. Generation stops at EOS, after --max-tokens tokens, or at the model's
context length (a note on stderr says so).`,
		Example: `  bin/darwinlm generate --model hf:karpathy/tinyllamas/stories260K/stories260K.bin --max-tokens 200
  bin/darwinlm generate --temperature 0.8 --seed 7 "Once upon a time"`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usagef(cmd, "give one PROMPT argument (quote it), got %d: %q", len(args), args)
			case len(args) == 1 && cmd.Flags().Changed("prompt"):
				return usagef(cmd, "give the prompt as an argument or with --prompt, not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				prompt = args[0]
			}
			if maxTokens < 0 {
				return usagef(cmd, "--max-tokens must be ≥ 0, got %d", maxTokens)
			}
			if err := checkNonNegative(cmd, "--temperature", temperature); err != nil {
				return err
			}
			if !(topP > 0 && topP <= 1) {
				return usagef(cmd, "--top-p must be in (0, 1], got %v", topP)
			}
			if !utf8.ValidString(prompt) {
				return usagef(cmd, "the prompt is not valid UTF-8 (at byte %d)", data.InvalidUTF8(prompt))
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			ids := tokenizer.EncodeSpecial(tok, prompt)
			if len(ids) == 0 {
				if tok.BOS() < 0 {
					return fmt.Errorf("empty prompt and the tokenizer has no BOS token to start from")
				}
				ids = []int{tok.BOS()}
			}
			limit := len(ids) + maxTokens
			if ctx := m.Cfg.MaxSeq; ctx > 0 && limit > ctx {
				if len(ids) >= ctx {
					return fmt.Errorf("the prompt is %d tokens, the model's whole context of %d; nothing can be generated", len(ids), ctx)
				}
				limit = ctx
				fmt.Fprintf(os.Stderr, "generate: note: the model's context is %d tokens, so at most %d of the --max-tokens %d can follow the %d-token prompt\n",
					ctx, ctx-len(ids), maxTokens, len(ids))
			}
			rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
			return mf.computeErr(be, generate(os.Stdout, be, m, tok, ids, limit, temperature, topP, rng))
		},
	}
	mf.register(c)
	c.Flags().StringVar(&prompt, "prompt", "", "prompt text, or give it as the argument (BOS is added as the tokenizer config says)")
	c.Flags().IntVar(&maxTokens, "max-tokens", 256, "number of tokens to generate")
	c.Flags().Float64Var(&temperature, "temperature", 0, "sampling temperature; 0 means greedy")
	c.Flags().Float64Var(&topP, "top-p", 1, "nucleus sampling threshold (with --temperature)")
	c.Flags().Uint64Var(&seed, "seed", 0, "random seed for sampling")
	addCommand(c)
}

// generate continues ids up to limit tokens (or EOS) with m on be's device
// (the weights resident once, the keys and values in a KV cache there) and
// writes the text to w as it grows, then a newline. A device error (e.g.
// out of GPU memory) is returned, naming the token it stopped at.
func generate(w io.Writer, be backend.Backend, m *model.Model, tok tokenizer.Tokenizer, ids []int, limit int, temperature, topP float64, rng *rand.Rand) error {
	r, err := m.Upload(nn.DeviceFor(be))
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	defer r.Release()
	cache := m.NewCache()
	defer cache.Release()
	logits, err := r.Step(cache, ids)
	if err != nil {
		return fmt.Errorf("generate: the %d-token prompt: %w", len(ids), err)
	}
	printed := tok.Decode(ids)
	fmt.Fprint(w, printed)
	for len(ids) < limit {
		next := sample(logits, temperature, topP, rng)
		if next == tok.EOS() {
			break
		}
		ids = append(ids, next)
		// Decode the whole sequence and print what is new, so byte
		// fallback tokens that form one character print correctly.
		s := tok.Decode(ids)
		if strings.HasPrefix(s, printed) {
			fmt.Fprint(w, s[len(printed):])
			printed = s
		}
		if logits, err = r.Step(cache, []int{next}); err != nil {
			fmt.Fprintln(w)
			return fmt.Errorf("generate: token %d: %w", len(ids), err)
		}
	}
	fmt.Fprintln(w)
	return nil
}

// sample picks the next token: argmax when temperature is 0, otherwise a draw
// from softmax(logits/temperature) restricted to the top-p nucleus.
func sample(logits []float32, temperature, topP float64, rng *rand.Rand) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	if temperature == 0 {
		return best
	}
	p := make([]float64, len(logits))
	var z float64
	for i, v := range logits {
		p[i] = math.Exp((float64(v) - float64(logits[best])) / temperature)
		z += p[i]
	}
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	// Sort indices by probability, descending, ties by id for determinism.
	sortByProb(idx, p)
	var cum float64
	cut := len(idx)
	for i, j := range idx {
		cum += p[j] / z
		if cum >= topP {
			cut = i + 1
			break
		}
	}
	var mass float64
	for _, j := range idx[:cut] {
		mass += p[j]
	}
	u := rng.Float64() * mass
	for _, j := range idx[:cut] {
		u -= p[j]
		if u <= 0 {
			return j
		}
	}
	return idx[cut-1]
}

func sortByProb(idx []int, p []float64) {
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return a - b
	})
}
