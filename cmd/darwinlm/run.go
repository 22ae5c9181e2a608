package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"

	"github.com/klauspost/cpuid/v2"
	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/experiment"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/report"
)

func init() {
	var profile, backendName, results string
	var quiet, noReport bool
	c := &cobra.Command{
		Use:   "run EXPERIMENT.yaml",
		Short: "Run an experiment (one paper table or ablation) end to end as a cached DAG of stages",
		Long: `run executes the stages of an experiment file (database, one-shot baselines,
ShearedLlama, search, post-training, one evaluation per table row) in
dependency order. Each finished stage is cached under RESULTS/cache/ by a hash
of its inputs, settings and the experiment's version: a rerun reuses finished
stages and an interrupted run resumes at the first unfinished one. A stage
whose implementation is not in this build is recorded as "not run" with the
reason, with every row that needs it.

Results go to RESULTS/<experiment>/<profile>/*.parquet (commit, date, machine
and profile in the files' key-value metadata); then the table is rendered as
darwinlm report does. The spec, the profile, the results folder's version,
the model and the data are all checked before any compute.`,
		Example: `  darwinlm run experiments/table2.yaml --profile local
  darwinlm run experiments/table1.yaml --profile smoke --results /tmp/results`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			progress.Quiet = quiet
			s, err := experiment.Load(args[0])
			if err != nil {
				return err
			}
			if _, err := s.Profile(profile); err != nil {
				return err
			}
			be, err := backend.Get(backendName)
			if err != nil {
				return fmt.Errorf("--backend: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out, err := experiment.Run(ctx, s, experiment.Options{Profile: profile, Backend: be, BackendName: backendName, Results: results,
				Commit: gitCommit(), Machine: machine(), Log: os.Stderr})
			if out == nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "run: %s/%s finished in %.1f s; results in %s\n", s.Name, profile, out.Seconds, out.Dir)
			if !noReport {
				if rerr := report.Render(s, profile, results, report.Options{Terminal: os.Stdout}); rerr != nil {
					return rerr
				}
			}
			return err // failed stages, after the table that shows them
		},
	}
	f := c.Flags()
	f.StringVar(&profile, "profile", "local", "scale profile of the experiment file (paper, local, smoke)")
	f.StringVar(&backendName, "backend", "auto", "compute backend: auto, "+strings.Join(backend.Names(), ", "))
	f.StringVar(&results, "results", "results", "results folder (cache/ and <experiment>/<profile>/ inside)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	f.BoolVar(&noReport, "no-report", false, "do not render the table after the run")
	addCommand(c)
}

// gitCommit is the checkout's commit ("unknown" outside git), with
// "+dirty" when the tree has changes.
func gitCommit() string {
	b, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(b))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += "+dirty"
	}
	return c
}

// machine describes the CPU the run used.
func machine() string {
	return fmt.Sprintf("%s, %d cores, %s/%s", strings.TrimSpace(cpuid.CPU.BrandName), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
}
