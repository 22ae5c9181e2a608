package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/backend/vulkan"
	"github.com/darwinlm/darwinlm-go/hub"
)

func init() {
	addCommand(&cobra.Command{
		Use:   "info",
		Short: "Show the detected CPU features, the selected kernels, the backends, the Vulkan devices and the hub mirror",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Println(strings.TrimRight(cpu.Info(), "\n"))
			def, err := backend.Get("")
			if err != nil {
				return err
			}
			fmt.Printf("backends:  %v (auto: %s)\n", backend.Names(), def.Name())
			fmt.Println(vulkan.Info())
			mirror := hub.Mirror()
			if mirror == "" {
				mirror = "none (set DARWINLM_HUB_MIRROR, or keep the mirror at ../shared/hf beside the repository)"
			}
			fmt.Println("mirror:    " + mirror)
			fmt.Println("version:   " + versionString())
			return nil
		},
	})
}
