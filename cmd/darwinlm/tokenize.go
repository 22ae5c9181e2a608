package main

import (
	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/tokenizer"
)

func init() {
	var mf modelFlags
	var text string
	var special bool
	c := &cobra.Command{
		Use:   "tokenize",
		Short: "Print the token ids of a text as JSON",
		Example: `  darwinlm tokenize --model hf:raincandy-u/TinyStories-656K --text "Once upon a time"
  darwinlm tokenize --model hf:karpathy/tinyllamas/stories260K/stories260K.bin --text "Hello" --special`,
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := loadTokenizerOnly(mf)
			if err != nil {
				return err
			}
			ids := tok.Encode(text)
			if special {
				ids = tokenizer.EncodeSpecial(tok, text)
			}
			if ids == nil {
				ids = []int{}
			}
			return printJSON(map[string]any{"ids": ids})
		},
	}
	mf.register(c)
	c.Flags().StringVar(&text, "text", "", "text to tokenize")
	c.Flags().BoolVar(&special, "special", false, "add special tokens (BOS) as the tokenizer config says")
	addCommand(c)
}

func loadTokenizerOnly(mf modelFlags) (tokenizer.Tokenizer, error) {
	_, tok, _, err := mf.load()
	return tok, err
}
