// Package shaders holds the GLSL compute shaders of the Vulkan backend and
// their SPIR-V, compiled once by `go generate` (glslangValidator from
// glslang-tools 12.0.0), committed, and embedded, so that building needs no
// shader compiler. The package is pure Go; only backend/vulkan (build tags
// vulkan && cgo) runs the programs.
package shaders

//go:generate go run ./gen

import (
	"embed"
	"encoding/binary"
	"fmt"
)

// PinnedGlslang is the glslangValidator version that produced the committed
// SPIR-V (Debian bookworm's glslang-tools 12.0.0-2).
const PinnedGlslang = "glslang Khronos. 12.0.0"

// Program is one SPIR-V module: a GLSL source compiled with a set of defines.
type Program struct {
	Name    string   // SPIR-V file is Name + ".spv"
	Source  string   // GLSL file in this directory
	Defines []string // passed as -DNAME
	Target  string   // --target-env
	// Skip is set for programs the pinned glslangValidator cannot compile;
	// they have no committed SPIR-V and are never used.
	Skip string
}

// Programs lists every module; the generator and the consistency test both
// read it, so the flags cannot drift apart.
var Programs = []Program{
	{Name: "gemm_nt", Source: "gemm.comp", Defines: []string{"TB"}},
	{Name: "gemm_nn", Source: "gemm.comp"},
	{Name: "gemm_tn", Source: "gemm.comp", Defines: []string{"TA"}},
	{Name: "gemm_nt_bf16", Source: "gemm.comp", Defines: []string{"TB", "B_BF16"}},
	{Name: "gemm_nt_f16", Source: "gemm.comp", Defines: []string{"TB", "B_F16"}},
	{Name: "rmsnorm", Source: "rmsnorm.comp"},
	{Name: "rope", Source: "rope.comp"},
	{Name: "softmax", Source: "softmax.comp"},
	{Name: "logsoftmax", Source: "softmax.comp", Defines: []string{"LOG"}},
	{Name: "silu_mul", Source: "silu_mul.comp"},
	{Name: "adamw", Source: "adamw.comp"},
	{Name: "xent", Source: "xent.comp"},
	{Name: "attention", Source: "attention.comp"},
	{Name: "embed", Source: "embed.comp"},
	{Name: "embed_bwd", Source: "embed_bwd.comp"},
	{Name: "rmsnorm_bwd_dx", Source: "rmsnorm_bwd.comp"},
	{Name: "rmsnorm_bwd_dw", Source: "rmsnorm_bwd.comp", Defines: []string{"DW"}},
	{Name: "swiglu_bwd", Source: "swiglu_bwd.comp"},
	{Name: "add", Source: "add.comp"},
	{Name: "addbias", Source: "addbias.comp"},
	{Name: "addbias_bwd", Source: "addbias.comp", Defines: []string{"BWD"}},
	{Name: "rope_seq", Source: "rope_seq.comp"},
	{Name: "attn", Source: "attn.comp"},
	{Name: "attn_ds", Source: "attn_ds.comp"},
	{Name: "attn_dq", Source: "attn_dq.comp"},
	{Name: "attn_dkv", Source: "attn_dkv.comp"},
	{Name: "xent_set", Source: "loss.comp", Defines: []string{"XENT"}},
	{Name: "kl", Source: "loss.comp", Defines: []string{"KL"}},
	{Name: "sparse_kl", Source: "loss.comp", Defines: []string{"SKL"}},
	{Name: "adamw_step", Source: "adamw_step.comp"},
	{Name: "gemm_coopmat", Source: "gemm_coopmat.comp", Target: "vulkan1.3",
		Skip: "glslang-tools 12.0.0 does not support GL_KHR_cooperative_matrix"},
}

// Args returns glslangValidator's arguments for p, writing to out.
func (p Program) Args(out string) []string {
	t := p.Target
	if t == "" {
		t = "vulkan1.0"
	}
	args := []string{"-V", "--target-env", t}
	for _, d := range p.Defines {
		args = append(args, "-D"+d)
	}
	return append(args, "-o", out, p.Source)
}

//go:embed *.spv
var spv embed.FS

// SPIRV returns the embedded module name as 32-bit words.
func SPIRV(name string) ([]uint32, error) {
	b, err := spv.ReadFile(name + ".spv")
	if err != nil {
		return nil, fmt.Errorf("shaders: no SPIR-V for %q: %w", name, err)
	}
	if len(b)%4 != 0 || len(b) < 20 || binary.LittleEndian.Uint32(b) != 0x07230203 {
		return nil, fmt.Errorf("shaders: %s.spv is not SPIR-V", name)
	}
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w, nil
}

// Bytes returns the embedded module name as bytes (nil if absent).
func Bytes(name string) []byte {
	b, _ := spv.ReadFile(name + ".spv")
	return b
}
