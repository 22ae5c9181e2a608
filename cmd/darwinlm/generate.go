package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/tokenizer"
)

func init() {
	var mf modelFlags
	var prompt string
	var maxTokens int
	var temperature, topP float64
	var seed uint64
	c := &cobra.Command{
		Use:   "generate",
		Short: "Generate text from a prompt (greedy unless --temperature is given)",
		Example: `  darwinlm generate --model hf:karpathy/tinyllamas/stories260K/stories260K.bin --max-tokens 200
  darwinlm generate --prompt "Once upon a time" --temperature 0.8 --seed 7`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxTokens < 0 {
				return fmt.Errorf("--max-tokens must be ≥ 0, got %d", maxTokens)
			}
			if temperature < 0 || topP <= 0 || topP > 1 {
				return fmt.Errorf("--temperature must be ≥ 0 and --top-p in (0,1]")
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
			if m.Cfg.MaxSeq > 0 && limit > m.Cfg.MaxSeq {
				limit = m.Cfg.MaxSeq
			}
			rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
			cache := m.NewCache()
			logits := m.Step(be, cache, ids)
			printed := tok.Decode(ids)
			fmt.Print(printed)
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
					fmt.Print(s[len(printed):])
					printed = s
				}
				logits = m.Step(be, cache, []int{next})
			}
			fmt.Println()
			return nil
		},
	}
	mf.register(c)
	c.Flags().StringVar(&prompt, "prompt", "", "prompt text (BOS is added as the tokenizer config says)")
	c.Flags().IntVar(&maxTokens, "max-tokens", 256, "number of tokens to generate")
	c.Flags().Float64Var(&temperature, "temperature", 0, "sampling temperature; 0 means greedy")
	c.Flags().Float64Var(&topP, "top-p", 1, "nucleus sampling threshold (with --temperature)")
	c.Flags().Uint64Var(&seed, "seed", 0, "random seed for sampling")
	addCommand(c)
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
