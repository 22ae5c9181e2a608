package main

import (
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

func init() {
	var mf modelFlags
	var text string
	var noSpecial, special bool
	c := &cobra.Command{
		Use:   "tokenize [TEXT]",
		Short: "Print the token ids of a text as JSON",
		Long: `tokenize prints {"ids":[...]} for TEXT (the argument, or --text).

Special tokens follow the tokenizer's configuration, as Hugging Face's
tokenizer(text) and llama.cpp do: BOS is prepended when the tokenizer adds it
(add_bos_token; llama2.c tokenizers always do). --no-special leaves special
tokens out, which is how ppl and eval tokenize text.`,
		Example: `  bin/darwinlm tokenize --model hf:raincandy-u/TinyStories-656K "Once upon a time"
  bin/darwinlm tokenize --model hf:karpathy/tinyllamas/stories260K/stories260K.bin --no-special --text "Hello"`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return usagef(cmd, "give one TEXT argument (quote it), got %d: %q", len(args), args)
			case len(args) == 1 && cmd.Flags().Changed("text"):
				return usagef(cmd, "give the text as an argument or with --text, not both")
			case len(args) == 0 && !cmd.Flags().Changed("text"):
				return usagef(cmd, "no text: give it as an argument or with --text")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				text = args[0]
			}
			if special && noSpecial {
				return usagef(cmd, "--special and --no-special contradict each other")
			}
			if !utf8.ValidString(text) {
				return usagef(cmd, "the text is not valid UTF-8 (at byte %d)", data.InvalidUTF8(text))
			}
			_, tok, _, err := mf.load()
			if err != nil {
				return err
			}
			ids := tokenizer.EncodeSpecial(tok, text)
			if noSpecial {
				ids = tok.Encode(text)
			}
			if ids == nil {
				ids = []int{}
			}
			return printJSON(map[string]any{"ids": ids})
		},
	}
	mf.register(c)
	c.Flags().StringVar(&text, "text", "", "text to tokenize (or give it as the argument)")
	c.Flags().BoolVar(&noSpecial, "no-special", false, "leave special tokens (BOS) out, as ppl and eval do")
	c.Flags().BoolVar(&special, "special", false, "add special tokens as the tokenizer config says (the default; kept for old scripts)")
	_ = c.Flags().MarkHidden("special")
	addCommand(c)
}
