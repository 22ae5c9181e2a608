package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/internal/progress"
)

func init() {
	var mf modelFlags
	var textFile string
	var seqLen int
	c := &cobra.Command{
		Use:   "ppl",
		Short: "Perplexity of a text with the paper's protocol (non-overlapping windows, no BOS)",
		Long: `ppl tokenizes the whole text without special tokens (T tokens), cuts it into
consecutive non-overlapping windows of exactly --seq-len tokens (the incomplete
tail is dropped), scores every window independently from position 0 without
BOS, and prints {"ppl":P,"tokens":T,"scored_tokens":S} where
ppl = exp(total negative log-likelihood / S) and S counts predicted tokens.

--text-file takes a text file, a .jsonl/.parquet file with a "text" column, a
folder of parquet shards, or a dataset id hf-dataset:ORG/NAME/CONFIG/SPLIT.
Documents of a dataset are joined with "\n\n".`,
		Example: `  darwinlm ppl --model hf:raincandy-u/TinyStories-656K \
      --text-file hf-dataset:roneneldan/TinyStories/default/validation_prefix --seq-len 512`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if textFile == "" {
				return fmt.Errorf("--text-file is required")
			}
			if seqLen < 2 {
				return fmt.Errorf("--seq-len must be at least 2, got %d", seqLen)
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			if m.Cfg.MaxSeq > 0 && seqLen > m.Cfg.MaxSeq {
				return fmt.Errorf("--seq-len %d exceeds the model's maximum length %d", seqLen, m.Cfg.MaxSeq)
			}
			docs, err := data.ReadTexts(textFile)
			if err != nil {
				return err
			}
			var bar *progress.Bar
			res, err := eval.Perplexity(m, be, tok, strings.Join(docs, "\n\n"), seqLen, func(done, total int) {
				if bar == nil {
					bar = progress.New(int64(total), "ppl windows")
				}
				bar.Set(done)
			})
			bar.Finish()
			if err != nil {
				return err
			}
			return printJSON(map[string]any{"ppl": res.PPL, "tokens": res.Tokens, "scored_tokens": res.Scored,
				"windows": res.Windows, "seq_len": seqLen, "model": mf.model, "backend": be.Name()})
		},
	}
	mf.register(c)
	c.Flags().StringVar(&textFile, "text-file", "", "text to score (file, parquet/jsonl, folder or hf-dataset: id)")
	c.Flags().IntVar(&seqLen, "seq-len", 2048, "window length in tokens")
	addCommand(c)
}
