package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"    // registers "cpu" and "purego"
	_ "github.com/darwinlm/darwinlm-go/backend/vulkan" // registers "vulkan" (a stub without -tags vulkan)
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/tokenizer"
)

// modelFlags are shared by every command that loads a model.
type modelFlags struct {
	model, tokenizer, backend string
	device                    int
	quiet                     bool
}

func (f *modelFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.model, "model", "hf:raincandy-u/TinyStories-656K",
		"model: hf:ORG/NAME[/SUBDIR], a Hugging Face folder, a llama2.c .bin, or a training run's --out folder (its final model, else its latest checkpoint)")
	c.Flags().StringVar(&f.tokenizer, "tokenizer", "", "tokenizer file (default: found beside the model)")
	c.Flags().StringVar(&f.backend, "backend", "auto", "compute backend: auto (a Vulkan GPU when built with it and present, else cpu), "+strings.Join(backend.Names(), ", "))
	c.Flags().IntVar(&f.device, "device", -1, "device index for --backend vulkan (darwinlm info lists them); CPU Vulkan drivers such as lavapipe run only when chosen here")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress bars")
}

func (f *modelFlags) load() (*model.Model, tokenizer.Tokenizer, backend.Backend, error) {
	progress.Quiet = f.quiet
	be, err := backend.Open(f.backend, f.device)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--backend: %w", err)
	}
	m, tok, err := model.Open(f.model, f.tokenizer)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, tok, be, nil
}

// computeErr names the model and the device of a failed computation (a
// device error such as a GPU out of memory says nothing of either).
func (f *modelFlags) computeErr(be backend.Backend, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s on %s: %w", f.model, be.Name(), err)
}

// printJSON writes v as one JSON line on stdout. A non-finite number (which
// JSON cannot hold) is reported by its field name.
func printJSON(v any) error {
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			if f, ok := x.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
				return fmt.Errorf("result field %q is %v (not a finite number); the model's outputs overflowed or are not finite", k, f)
			}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(os.Stdout, string(b))
	return err
}

// writeOutput writes a command's output file atomically (a variable so that
// tests can make it fail after the compute).
var writeOutput = atomicfile.WriteFile

// usageError marks a mistake in the command line (flags, arguments); the
// binary exits with status 2 for it, 1 for every other error.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// usagef returns a usageError naming the command's --help.
func usagef(c *cobra.Command, format string, a ...any) error {
	return usageError{fmt.Errorf(format+" (see %s --help)", append(a, c.CommandPath())...)}
}

// noArgs is the Args rule of every command that takes only flags: a
// positional argument is a usage error, never silently ignored.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(c, "%s takes no positional arguments, got %q", c.CommandPath(), args)
	}
	return nil
}

// requireFlags returns a usage error naming the first of the flags that was
// not given on the command line.
func requireFlags(c *cobra.Command, names ...string) error {
	for _, n := range names {
		if f := c.Flags().Lookup(n); f != nil && !f.Changed {
			return usagef(c, "--%s is required", n)
		}
	}
	return nil
}

// checkFloatFlags rejects NaN and ±Inf in every floating-point flag of c
// (no command has a use for them); range checks are the command's.
func checkFloatFlags(c *cobra.Command) error {
	var err error
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || !f.Changed {
			return
		}
		switch f.Value.Type() {
		case "float64", "float32":
			var v float64
			if _, e := fmt.Sscan(f.Value.String(), &v); e != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				err = usagef(c, "--%s %s: not a finite number", f.Name, f.Value.String())
			}
		case "float64Slice", "float32Slice":
			for _, s := range strings.Split(strings.Trim(f.Value.String(), "[]"), ",") {
				var v float64
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				if _, e := fmt.Sscan(s, &v); e != nil || math.IsNaN(v) || math.IsInf(v, 0) {
					err = usagef(c, "--%s %s: not a finite number", f.Name, s)
				}
			}
		}
	})
	return err
}

// checkPositive is a usage error unless v > 0 (flag names the flag, e.g. "--lr").
func checkPositive(c *cobra.Command, flag string, v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return usagef(c, "%s must be a positive number, got %v", flag, v)
	}
	return nil
}

// checkNonNegative is a usage error unless v ≥ 0.
func checkNonNegative(c *cobra.Command, flag string, v float64) error {
	if !(v >= 0) || math.IsInf(v, 0) {
		return usagef(c, "%s must be ≥ 0, got %v", flag, v)
	}
	return nil
}

// checkWritable checks, before any compute, that an output file can be
// created at path: the folder it names exists and accepts new files, and path
// is not itself a folder. flag names the flag in the message (e.g. "--out").
// An empty path (the output is not requested) is fine. Nothing is left
// behind: the probe file is removed.
func checkWritable(flag, path string) error {
	if path == "" {
		return nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s %s: is a folder; give a file name", flag, path)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s %s: folder %s does not exist (create it first)", flag, path, dir)
	case err != nil:
		return fmt.Errorf("%s %s: %w", flag, path, err)
	case !st.IsDir():
		return fmt.Errorf("%s %s: %s is not a folder", flag, path, dir)
	}
	return probeDir(flag, path, dir)
}

// checkWritableDir checks, before any compute, that an output folder can be
// used: it is a writable folder, or it does not exist yet and its nearest
// existing parent is a writable folder (the command creates it later).
func checkWritableDir(flag, dir string) error {
	if dir == "" {
		return nil
	}
	p := filepath.Clean(dir)
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s %s: %s is not a folder", flag, dir, p)
			}
			return probeDir(flag, dir, p)
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%s %s: %w", flag, dir, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("%s %s: no existing parent folder", flag, dir)
		}
		p = parent
	}
}

func probeDir(flag, path, dir string) error {
	f, err := os.CreateTemp(dir, ".darwinlm-probe-*")
	if err != nil {
		return fmt.Errorf("%s %s: cannot write in %s: %v", flag, path, dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// checkDistinct refuses two output flags naming the same file.
func checkDistinct(flagA, a, flagB, b string) error {
	if a == "" || b == "" {
		return nil
	}
	if filepath.Clean(a) == filepath.Clean(b) {
		return fmt.Errorf("%s and %s name the same file %s", flagA, flagB, a)
	}
	return nil
}
