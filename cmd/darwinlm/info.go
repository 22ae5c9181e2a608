package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

func init() {
	addCommand(&cobra.Command{
		Use:   "info",
		Short: "Show the detected CPU features, the selected kernels and the available backends",
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Println(strings.TrimRight(cpu.Info(), "\n"))
			def, err := backend.Get("")
			if err != nil {
				return err
			}
			fmt.Printf("backends:  %v (default %s)\n", backend.Names(), def.Name())
			fmt.Println("vulkan:    not built yet (the CPU backend runs everything)")
			return nil
		},
	})
}
