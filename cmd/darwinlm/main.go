// Command darwinlm is the DarwinLM research harness: load Llama-family
// models, tokenize, generate, measure perplexity, evaluate, train and prune.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:   "darwinlm",
	Short: "Training-aware evolutionary structured pruning of Llama-family models",
	Long: `darwinlm is a reproducible research harness for DarwinLM (Tang et al.,
"DarwinLM: Evolutionary Structured Pruning of Large Language Models").

Models are given as a local Hugging Face folder, a llama2.c .bin checkpoint,
or a hub id hf:ORG/NAME[/SUBDIR], resolved in $DARWINLM_HUB_MIRROR, then the
Hugging Face cache, then by download (unless DARWINLM_OFFLINE=1).
Machine-readable output goes to stdout, logs and progress bars to stderr.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// addCommand is how each command file registers its subcommand (from init).
func addCommand(c *cobra.Command) { rootCmd.AddCommand(c) }

var cpuProfile string

func init() {
	rootCmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile to this file (go tool pprof)")
	rootCmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	rootCmd.PersistentPostRun = func(cmd *cobra.Command, args []string) {
		if cpuProfile != "" {
			pprof.StopCPUProfile()
		}
	}
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "darwinlm: error:", err)
		os.Exit(1)
	}
}
