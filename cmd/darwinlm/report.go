package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/experiment"
	"github.com/darwinlm/darwinlm-go/report"
)

func init() {
	var profile, results, out string
	c := &cobra.Command{
		Use:   "report EXPERIMENT.yaml",
		Short: "Render an experiment's table and figures from its Parquet results (no model is loaded)",
		Long: `report reads RESULTS/<experiment>/<profile>/*.parquet and prints the table
for the terminal, with the paper's rows (experiments/paper-reference.csv)
beside ours, clearly marked. With --out it also writes, into that folder,
<experiment>-<profile>.md (Markdown table, stage costs, run metadata) and
the figures as PNG and SVG: fitness against generation, and per-layer levels
of the searched model beside uniform. The output depends only on the Parquet
files (dates come from their metadata), so rendering twice gives the same
bytes.`,
		Example: `  darwinlm report experiments/table2.yaml --profile local
  darwinlm report experiments/table2.yaml --profile local --out results/table2/local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := experiment.Load(args[0])
			if err != nil {
				return err
			}
			if _, err := s.Profile(profile); err != nil {
				return err
			}
			return report.Render(s, profile, results, report.Options{Terminal: os.Stdout, OutDir: out})
		},
	}
	f := c.Flags()
	f.StringVar(&profile, "profile", "local", "scale profile (paper, local, smoke)")
	f.StringVar(&results, "results", "results", "results folder")
	f.StringVar(&out, "out", "", "also write Markdown and figures (PNG, SVG) into this folder")
	addCommand(c)
}
