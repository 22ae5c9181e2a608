// Command darwinlm is the DarwinLM research harness: load Llama-family
// models, tokenize, generate, measure perplexity, evaluate, train and prune.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/hub"
)

var rootCmd = &cobra.Command{
	Use:   "darwinlm",
	Short: "Training-aware evolutionary structured pruning of Llama-family models",
	Long: `darwinlm is a reproducible research harness for DarwinLM (Tang et al.,
"DarwinLM: Evolutionary Structured Pruning of Large Language Models").

Models are given as a local Hugging Face folder, a llama2.c .bin checkpoint,
a training run's output folder, or a hub id hf:ORG/NAME[/SUBDIR], resolved in
$DARWINLM_HUB_MIRROR, then the Hugging Face cache, then by download (unless
DARWINLM_OFFLINE=1). When DARWINLM_HUB_MIRROR is unset, ../shared/hf beside
the repository (the one holding the working directory, or the one whose bin/
holds this binary) is used when it exists.
Machine-readable output goes to stdout, logs and progress bars to stderr.
Exit status: 0 on success, 2 for a mistake on the command line, 1 otherwise.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// addCommand is how each command file registers its subcommand (from init).
func addCommand(c *cobra.Command) { rootCmd.AddCommand(c) }

var cpuProfile string

func init() {
	rootCmd.Version = versionString()
	rootCmd.SetVersionTemplate("darwinlm {{.Version}}\n")
	rootCmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef(c, "%v", err)
	})
	rootCmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile to this file (go tool pprof)")
	rootCmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFloatFlags(cmd); err != nil {
			return err
		}
		if cpuProfile == "" {
			return nil
		}
		if err := checkWritable("--cpuprofile", cpuProfile); err != nil {
			return err
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

// execute runs the command line; tests call it in-process.
func execute() error {
	// Every command that does not declare its positional arguments takes
	// none: an argument is a usage error, never silently ignored.
	for _, c := range rootCmd.Commands() {
		if c.Args == nil && !c.HasSubCommands() && c.Name() != "help" && c.Name() != "completion" {
			c.Args = noArgs
		}
	}
	return rootCmd.Execute()
}

func main() {
	defaultMirror()
	if err := execute(); err != nil {
		fmt.Fprintln(os.Stderr, "darwinlm: error:", err)
		var u usageError
		if errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") ||
			strings.HasPrefix(err.Error(), "unknown flag") {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// defaultMirror sets DARWINLM_HUB_MIRROR, when it is unset, to ../shared/hf
// beside the repository holding the working directory (the nearest folder
// above it with a go.mod), else beside the repository whose bin/ holds the
// running binary, when that folder exists. It is how the README's commands
// run verbatim from a fresh clone without make.
func defaultMirror() {
	if os.Getenv("DARWINLM_HUB_MIRROR") != "" {
		return
	}
	var roots []string
	if r := hub.ModuleRoot(); r != "" {
		roots = append(roots, r)
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			r := filepath.Dir(filepath.Dir(exe))
			if _, err := os.Stat(filepath.Join(r, "go.mod")); err == nil {
				roots = append(roots, r)
			}
		}
	}
	for _, r := range roots {
		m := filepath.Join(filepath.Dir(r), "shared", "hf")
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			os.Setenv("DARWINLM_HUB_MIRROR", m)
			return
		}
	}
}

// buildCommit is set by make build (-ldflags -X main.buildCommit=...) for
// builds where go build does not stamp the VCS state (-buildvcs=false, git
// worktrees).
var buildCommit string

// versionString is the module version and the VCS commit the binary was
// built from (go build stamps both; make build passes the commit too;
// "(devel)" and "unknown" otherwise).
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	rev, when, dirty := "unknown", "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " with uncommitted changes"
			}
		}
	}
	if rev == "unknown" && buildCommit != "" {
		rev = strings.TrimSuffix(buildCommit, "-dirty")
		if rev != buildCommit {
			dirty = " with uncommitted changes"
		}
	}
	out := fmt.Sprintf("%s %s, commit %s%s", bi.Main.Path, v, rev, dirty)
	if when != "" {
		out += " (" + when + ")"
	}
	return out + ", " + bi.GoVersion
}
