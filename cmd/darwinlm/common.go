package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"    // registers "cpu" and "purego"
	_ "github.com/darwinlm/darwinlm-go/backend/vulkan" // registers "vulkan" (a stub without -tags vulkan)
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
		"model: hf:ORG/NAME[/SUBDIR], a Hugging Face folder, or a llama2.c .bin")
	c.Flags().StringVar(&f.tokenizer, "tokenizer", "", "tokenizer file (default: found beside the model)")
	c.Flags().StringVar(&f.backend, "backend", "auto", "compute backend: auto (a Vulkan GPU when built with it and present, else cpu), "+strings.Join(backend.Names(), ", "))
	c.Flags().IntVar(&f.device, "device", -1, "device index for --backend vulkan (darwinlm info lists them); CPU Vulkan drivers such as lavapipe run only when chosen here")
	c.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "no progress bars")
}

func (f *modelFlags) load() (*model.Model, tokenizer.Tokenizer, backend.Backend, error) {
	progress.Quiet = f.quiet
	be, err := backend.Open(f.backend, f.device)
	if err != nil {
		return nil, nil, nil, err
	}
	m, tok, err := model.Open(f.model, f.tokenizer)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, tok, be, nil
}

// printJSON writes v as one JSON line on stdout.
func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(os.Stdout, string(b))
	return err
}
