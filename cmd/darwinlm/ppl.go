package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/internal/progress"
)

func init() {
	var mf modelFlags
	var textFile, out string
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
		Args: noArgs,
		Example: `  bin/darwinlm ppl --model hf:raincandy-u/TinyStories-656K \
      --text-file hf-dataset:roneneldan/TinyStories/default/validation_prefix --seq-len 512`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "text-file"); err != nil {
				return err
			}
			if cmd.Flags().Changed("seq-len") && seqLen < 2 {
				return usagef(cmd, "--seq-len must be at least 2, got %d", seqLen)
			}
			if err := checkWritable("--out", out); err != nil {
				return err
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("seq-len") {
				// Default: 2048, or the model's context when shorter (as eval).
				seqLen = 2048
				if m.Cfg.MaxSeq > 0 && m.Cfg.MaxSeq < seqLen {
					seqLen = m.Cfg.MaxSeq
				}
			}
			if m.Cfg.MaxSeq > 0 && seqLen > m.Cfg.MaxSeq {
				return usagef(cmd, "--seq-len %d exceeds the model's context of %d tokens", seqLen, m.Cfg.MaxSeq)
			}
			docs, err := data.ReadTexts(textFile)
			if err != nil {
				return fmt.Errorf("--text-file: %w", err)
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
				return mf.computeErr(be, err)
			}
			result := map[string]any{"ppl": res.PPL, "tokens": res.Tokens, "scored_tokens": res.Scored,
				"windows": res.Windows, "seq_len": seqLen, "model": mf.model, "text_file": textFile, "backend": be.Name()}
			if err := printJSON(result); err != nil {
				return err
			}
			if out != "" {
				b, _ := json.MarshalIndent(result, "", "  ")
				if err := writeOutput(out, append(b, '\n')); err != nil {
					return fmt.Errorf("--out: %w (the result is on stdout)", err)
				}
			}
			return nil
		},
	}
	mf.register(c)
	c.Flags().StringVar(&textFile, "text-file", "", "text to score (file, parquet/jsonl, folder or hf-dataset: id)")
	c.Flags().IntVar(&seqLen, "seq-len", 0, "window length in tokens (default: 2048, or the model's context when shorter)")
	c.Flags().StringVar(&out, "out", "", "also write the JSON result to this file (its folder must exist)")
	addCommand(c)
}
