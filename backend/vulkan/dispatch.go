//go:build vulkan && cgo

package vulkan

// The one place that creates pipelines and records dispatches.

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/vkngwrapper/core/v2/core1_0"

	"github.com/darwinlm/darwinlm-go/shaders"
)

type pipeline struct {
	dsl    core1_0.DescriptorSetLayout
	layout core1_0.PipelineLayout
	mod    core1_0.ShaderModule
	pipe   core1_0.Pipeline
	nbind  int
	npush  int // bytes
}

func (p *pipeline) destroy(dev core1_0.Device) {
	p.pipe.Destroy(nil)
	p.layout.Destroy(nil)
	p.dsl.Destroy(nil)
	p.mod.Destroy(nil)
}

// programs: storage-buffer bindings and push-constant words of each shader
// (they must match the GLSL declarations).
var programs = map[string]struct{ bind, push int }{
	"gemm_nt": {4, 11}, "gemm_nn": {4, 11}, "gemm_tn": {4, 11}, "gemm_nt_bf16": {4, 11}, "gemm_nt_f16": {4, 11},
	"rmsnorm": {4, 8}, "rope": {3, 9}, "softmax": {2, 4}, "logsoftmax": {2, 4},
	"silu_mul": {3, 4}, "adamw": {4, 14}, "xent": {4, 8},
	"attention": {6, 13}, "embed": {3, 6}, "embed_bwd": {3, 6},
	"rmsnorm_bwd_dx": {5, 7}, "rmsnorm_bwd_dw": {6, 9}, "swiglu_bwd": {5, 6},
	// the device-resident interface (Dev)
	"add": {2, 3}, "addbias": {2, 4}, "addbias_bwd": {3, 6}, "rope_seq": {4, 9},
	"attn": {7, 13}, "attn_ds": {6, 11}, "attn_dq": {5, 10}, "attn_dkv": {8, 15},
	"xent_set": {4, 8}, "kl": {5, 9}, "sparse_kl": {6, 11}, "adamw_step": {5, 14},
	"sumsq": {2, 4}, "scale": {1, 3}, "sgd": {2, 5},
}

func (d *Device) pipeline(name string) (*pipeline, error) {
	if p := d.pipes[name]; p != nil {
		return p, nil
	}
	spec, ok := programs[name]
	if !ok {
		return nil, fmt.Errorf("vulkan: unknown program %q", name)
	}
	code, err := shaders.SPIRV(name)
	if err != nil {
		return nil, err
	}
	p := &pipeline{nbind: spec.bind, npush: 4 * spec.push}
	var binds []core1_0.DescriptorSetLayoutBinding
	for i := 0; i < spec.bind; i++ {
		binds = append(binds, core1_0.DescriptorSetLayoutBinding{Binding: i, DescriptorType: core1_0.DescriptorTypeStorageBuffer,
			DescriptorCount: 1, StageFlags: core1_0.StageCompute})
	}
	if p.dsl, _, err = d.dev.CreateDescriptorSetLayout(nil, core1_0.DescriptorSetLayoutCreateInfo{Bindings: binds}); err != nil {
		return nil, fmt.Errorf("vulkan: %s: descriptor set layout: %w", name, err)
	}
	if p.mod, _, err = d.dev.CreateShaderModule(nil, core1_0.ShaderModuleCreateInfo{Code: code}); err != nil {
		p.dsl.Destroy(nil)
		return nil, fmt.Errorf("vulkan: %s: shader module: %w", name, err)
	}
	if p.layout, _, err = d.dev.CreatePipelineLayout(nil, core1_0.PipelineLayoutCreateInfo{SetLayouts: []core1_0.DescriptorSetLayout{p.dsl},
		PushConstantRanges: []core1_0.PushConstantRange{{StageFlags: core1_0.StageCompute, Offset: 0, Size: p.npush}}}); err != nil {
		p.mod.Destroy(nil)
		p.dsl.Destroy(nil)
		return nil, fmt.Errorf("vulkan: %s: pipeline layout: %w", name, err)
	}
	pipes, _, err := d.dev.CreateComputePipelines(nil, nil, []core1_0.ComputePipelineCreateInfo{{
		Stage:  core1_0.PipelineShaderStageCreateInfo{Name: "main", Stage: core1_0.StageCompute, Module: p.mod},
		Layout: p.layout, BasePipelineIndex: -1}})
	if err != nil {
		p.layout.Destroy(nil)
		p.mod.Destroy(nil)
		p.dsl.Destroy(nil)
		return nil, fmt.Errorf("vulkan: %s: compute pipeline: %w", name, err)
	}
	p.pipe = pipes[0]
	d.pipes[name] = p
	return p, nil
}

// begin starts recording the batch if needed.
func (d *Device) begin() error {
	if d.open {
		return nil
	}
	if _, err := d.cb.Begin(core1_0.CommandBufferBeginInfo{Flags: core1_0.CommandBufferUsageOneTimeSubmit}); err != nil {
		return fmt.Errorf("vulkan: begin command buffer: %w", err)
	}
	d.open = true
	return nil
}

// barrier orders everything recorded so far before everything after it
// (compute and transfer; host reads after the fence).
func (d *Device) barrier() {
	d.cb.CmdPipelineBarrier(core1_0.PipelineStageComputeShader|core1_0.PipelineStageTransfer,
		core1_0.PipelineStageComputeShader|core1_0.PipelineStageTransfer|core1_0.PipelineStageHost, 0,
		[]core1_0.MemoryBarrier{{
			SrcAccessMask: core1_0.AccessShaderWrite | core1_0.AccessTransferWrite,
			DstAccessMask: core1_0.AccessShaderRead | core1_0.AccessShaderWrite | core1_0.AccessTransferRead |
				core1_0.AccessTransferWrite | core1_0.AccessHostRead}}, nil, nil)
}

// flush submits the batch and waits for it.
func (d *Device) flush() error {
	if !d.open {
		return nil
	}
	d.open = false
	d.batch++
	if _, err := d.cb.End(); err != nil {
		d.freeSets()
		return fmt.Errorf("vulkan: end command buffer: %w", err)
	}
	if _, err := d.queue.Submit(d.fence, []core1_0.SubmitInfo{{CommandBuffers: []core1_0.CommandBuffer{d.cb}}}); err != nil {
		d.freeSets()
		return fmt.Errorf("vulkan: submit: %w", err)
	}
	d.submits++
	if _, err := d.fence.Wait(10 * time.Minute); err != nil {
		return fmt.Errorf("vulkan: waiting for the device (device lost or out of memory?): %w", err)
	}
	if _, err := d.fence.Reset(); err != nil {
		return fmt.Errorf("vulkan: fence reset: %w", err)
	}
	if _, err := d.cb.Reset(0); err != nil {
		return fmt.Errorf("vulkan: command buffer reset: %w", err)
	}
	if err := d.freeSets(); err != nil {
		return err
	}
	d.nsets, d.ndisp = 0, 0
	for _, b := range d.transient {
		b.free()
	}
	for _, b := range d.deferred {
		b.free()
	}
	d.transient, d.deferred = d.transient[:0], d.deferred[:0]
	d.host.used, d.scratch.used = 0, 0
	return nil
}

// freeSets returns the batch's descriptor sets to the pool one by one
// (vkFreeDescriptorSets), not with a pool reset: vkngwrapper keeps every
// set in its handle-keyed object store until it is freed through it, and a
// reset would leave stale entries that a later object with a reused handle
// value (lavapipe's handles are heap addresses) would be mistaken for.
func (d *Device) freeSets() error {
	if len(d.sets) == 0 {
		return nil
	}
	_, err := d.dev.FreeDescriptorSets(d.sets)
	clear(d.sets)
	d.sets, d.nsets = d.sets[:0], 0
	if err != nil {
		return fmt.Errorf("vulkan: freeing descriptor sets: %w", err)
	}
	return nil
}

// hostInts uploads small host integers into a buffer that lives until the
// current batch is done.
func (d *Device) hostInts(v []int) (View, error) {
	b, err := d.alloc(I32, max(len(v), 1))
	if err != nil {
		return View{}, err
	}
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], uint32(int32(x)))
	}
	if err := b.writeLocked(0, raw); err != nil {
		b.free()
		return View{}, err
	}
	d.transient = append(d.transient, b) // freed by the flush that ends the batch using it
	return b.Slice(0, len(v)), nil
}

// Flush submits the recorded work and waits for it to finish.
func (d *Device) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flush()
}

// pc builds push constants from uint32 and float32 values.
func pc(vals ...any) []byte {
	b := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		switch x := v.(type) {
		case int:
			b = binary.LittleEndian.AppendUint32(b, uint32(x))
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, x)
		case bool:
			u := uint32(0)
			if x {
				u = 1
			}
			b = binary.LittleEndian.AppendUint32(b, u)
		case float32:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		default:
			panic(fmt.Sprintf("vulkan: push constant of type %T", v))
		}
	}
	return b
}

// dispatch records one dispatch of program name over groups workgroups. The
// first len(views) push-constant words are the views' element offsets within
// their bound windows (filled here); rest follows them. A zero View binds a
// dummy buffer. The caller holds d.mu and has checked that every view spans
// at most maxElems of its type.
func (d *Device) dispatch(name string, views []View, rest []byte, gx, gy, gz int) error {
	p, err := d.pipeline(name)
	if err != nil {
		return err
	}
	if len(views) != p.nbind || 4*len(views)+len(rest) != p.npush {
		return fmt.Errorf("vulkan: %s: %d bindings and %d push bytes, want %d and %d", name, len(views), 4*len(views)+len(rest), p.nbind, p.npush)
	}
	if gx == 0 || gy == 0 || gz == 0 {
		return nil
	}
	lim := d.props.Limits.MaxComputeWorkGroupCount
	if gx > lim[0] || gy > lim[1] || gz > lim[2] {
		return fmt.Errorf("vulkan: %s: %d×%d×%d workgroups exceed the device limit %v", name, gx, gy, gz, lim)
	}
	if d.nsets >= setsPerBatch {
		if err := d.flush(); err != nil {
			return err
		}
	}
	if err := d.begin(); err != nil {
		return err
	}
	sets, _, err := d.dev.AllocateDescriptorSets(core1_0.DescriptorSetAllocateInfo{DescriptorPool: d.dpool,
		SetLayouts: []core1_0.DescriptorSetLayout{p.dsl}})
	if err != nil {
		return fmt.Errorf("vulkan: %s: descriptor set: %w", name, err)
	}
	d.nsets++
	d.sets = append(d.sets, sets[0])
	var writes []core1_0.WriteDescriptorSet
	push := make([]byte, 0, p.npush)
	for i, v := range views {
		b := v.B
		if b == nil {
			b = d.dummy
			v = View{b, 0, 1}
		}
		es := b.dt.size()
		start := v.Off * es
		aligned := start / d.align * d.align
		end := min(((v.Off+max(v.N, 1))*es+3)&^3, b.bytes)
		if end-aligned > d.props.Limits.MaxStorageBufferRange {
			return fmt.Errorf("vulkan: %s: binding %d spans %d bytes, over maxStorageBufferRange %d", name, i, end-aligned, d.props.Limits.MaxStorageBufferRange)
		}
		writes = append(writes, core1_0.WriteDescriptorSet{DstSet: sets[0], DstBinding: i, DescriptorType: core1_0.DescriptorTypeStorageBuffer,
			BufferInfo: []core1_0.DescriptorBufferInfo{{Buffer: b.buf, Offset: aligned, Range: end - aligned}}})
		push = binary.LittleEndian.AppendUint32(push, uint32((start-aligned)/es))
		b.batch = d.batch
	}
	push = append(push, rest...)
	if err := d.dev.UpdateDescriptorSets(writes, nil); err != nil {
		return fmt.Errorf("vulkan: %s: descriptor update: %w", name, err)
	}
	d.cb.CmdBindPipeline(core1_0.PipelineBindPointCompute, p.pipe)
	d.cb.CmdBindDescriptorSets(core1_0.PipelineBindPointCompute, p.layout, 0, sets, nil)
	d.cb.CmdPushConstants(p.layout, core1_0.StageCompute, 0, push)
	d.cb.CmdDispatch(gx, gy, gz)
	d.barrier()
	d.ndisp++
	d.ndispatches++
	return nil
}

// maxElems is the most elements of type dt one binding may span (leaving
// room for the alignment slack of the window start and the rounding of its
// end to a whole word).
func (d *Device) maxElems(dt DType) int { return (d.maxBind - d.align - 4) / dt.size() }

// grid1D spreads n invocations of 256 over x (and y beyond the x limit).
func (d *Device) grid1D(n int) (int, int) {
	g := (n + 255) / 256
	gx := min(g, d.props.Limits.MaxComputeWorkGroupCount[0])
	return gx, (g + gx - 1) / gx
}
