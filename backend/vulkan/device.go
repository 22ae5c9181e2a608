//go:build vulkan && cgo

package vulkan

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/vkngwrapper/core/v2"
	"github.com/vkngwrapper/core/v2/common"
	"github.com/vkngwrapper/core/v2/core1_0"
	"github.com/vkngwrapper/extensions/v2/ext_debug_utils"
)

// Available reports whether this binary was built with the Vulkan backend.
const Available = true

const validationLayer = "VK_LAYER_KHRONOS_validation"

// ErrNoGPU is returned (wrapped) when device −1 finds no discrete or
// integrated GPU.
var ErrNoGPU = errors.New("no Vulkan GPU")

// Device is an open Vulkan device with its queue, pipelines and the command
// buffer being recorded. Its methods are safe for concurrent use (one mutex).
type Device struct {
	mu sync.Mutex

	loader    *core.VulkanLoader
	inst      core1_0.Instance
	messenger ext_debug_utils.DebugUtilsMessenger
	pd        core1_0.PhysicalDevice
	props     *core1_0.PhysicalDeviceProperties
	dev       core1_0.Device
	queue     core1_0.Queue
	qfi       int
	index     int

	memType, stageType int  // device buffers; host-visible staging
	mapped             bool // device buffers are host-visible+coherent: map them
	heapSize           int
	maxBind, align     int // bytes bound per binding (≤ maxStorageBufferRange), offset alignment
	coopMat            bool

	pipes       map[string]*pipeline
	cpool       core1_0.CommandPool
	cb          core1_0.CommandBuffer
	fence       core1_0.Fence
	dpool       core1_0.DescriptorPool
	nsets       int // descriptor sets used in the current batch
	sets        []core1_0.DescriptorSet
	batch       uint64 // id of the batch being recorded
	open        bool   // cb is recording
	ndisp       int    // dispatches in the current batch
	submits     int    // batches submitted (for tests and benchmarks)
	ndispatches int    // dispatches recorded in all
	dummy       *Buffer
	staging     *Buffer
	transient   []*Buffer // small per-call buffers (ids, maps), freed by the flush that ends their batch
	deferred    []*Buffer // freed by the user while the recorded batch uses them
	live        map[*Buffer]struct{}

	// The device-resident interface (Dev): per-batch arenas for host data
	// (ids, tables) and device scratch, reset by every flush; the AdamW
	// non-finite flag; rotary tables by RopeTable.
	host, scratch arena
	flag          *Buffer // one word per Dev (flagNext handed out, flagFree returned)
	flagNext      int
	flagFree      []int
	ropes         map[any]*ropeTab
	ropeClock     uint64
	attnCap       int // floats of compact attention probabilities per dispatch (1<<26; tests lower it)

	vmu  sync.Mutex
	vmsg []string
}

const setsPerBatch = 2048

// Open opens a device (see Options).
func Open(o Options) (*Device, error) {
	loader, err := core.CreateSystemLoader()
	if err != nil {
		return nil, fmt.Errorf("vulkan: loader: %w", err)
	}
	d := &Device{loader: loader, pipes: map[string]*pipeline{}, live: map[*Buffer]struct{}{}, ropes: map[any]*ropeTab{}, attnCap: 1 << 26}
	ici := core1_0.InstanceCreateInfo{APIVersion: common.Vulkan1_1, ApplicationName: "darwinlm"}
	if o.Validation {
		layers, _, err := loader.AvailableLayers()
		if err != nil {
			return nil, fmt.Errorf("vulkan: listing layers: %w", err)
		}
		if _, ok := layers[validationLayer]; !ok {
			return nil, fmt.Errorf("vulkan: validation requested but %s is not installed (apt-get install vulkan-validationlayers)", validationLayer)
		}
		ici.EnabledLayerNames = []string{validationLayer}
		ici.EnabledExtensionNames = []string{ext_debug_utils.ExtensionName}
	}
	inst, _, err := loader.CreateInstance(nil, ici)
	if err != nil {
		return nil, fmt.Errorf("vulkan: creating instance: %w (is a Vulkan driver installed? VK_DRIVER_FILES=%s)", err, driverFiles())
	}
	d.inst = inst
	if o.Validation {
		dbg := ext_debug_utils.CreateExtensionFromInstance(inst)
		m, _, err := dbg.CreateDebugUtilsMessenger(inst, nil, ext_debug_utils.DebugUtilsMessengerCreateInfo{
			MessageSeverity: ext_debug_utils.SeverityWarning | ext_debug_utils.SeverityError,
			MessageType:     ext_debug_utils.TypeGeneral | ext_debug_utils.TypeValidation | ext_debug_utils.TypePerformance,
			UserCallback: func(_ ext_debug_utils.DebugUtilsMessageTypeFlags, sev ext_debug_utils.DebugUtilsMessageSeverityFlags,
				cd *ext_debug_utils.DebugUtilsMessengerCallbackData) bool {
				d.vmu.Lock()
				d.vmsg = append(d.vmsg, fmt.Sprintf("%s %s: %s", sev, cd.MessageIDName, cd.Message))
				d.vmu.Unlock()
				return false
			}})
		if err != nil {
			inst.Destroy(nil)
			return nil, fmt.Errorf("vulkan: debug messenger: %w", err)
		}
		d.messenger = m
	}
	if err := d.init(o); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func driverFiles() string {
	for _, k := range []string{"VK_DRIVER_FILES", "VK_ICD_FILENAMES"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "(unset)"
}

// devTypeName names a physical device type.
func devTypeName(t core1_0.PhysicalDeviceType) string {
	switch t {
	case core1_0.PhysicalDeviceTypeDiscreteGPU:
		return "discrete GPU"
	case core1_0.PhysicalDeviceTypeIntegratedGPU:
		return "integrated GPU"
	case core1_0.PhysicalDeviceTypeVirtualGPU:
		return "virtual GPU"
	case core1_0.PhysicalDeviceTypeCPU:
		return "CPU"
	}
	return "other"
}

// pickDevice returns the index to use: want ≥ 0 is taken as given; −1 takes
// the first discrete GPU, else the first integrated one.
func pickDevice(types []core1_0.PhysicalDeviceType, names []string, want int) (int, error) {
	if want >= 0 {
		if want >= len(types) {
			return 0, fmt.Errorf("vulkan: --device %d: only %d device(s): %s", want, len(types), listNames(types, names))
		}
		return want, nil
	}
	for _, t := range []core1_0.PhysicalDeviceType{core1_0.PhysicalDeviceTypeDiscreteGPU, core1_0.PhysicalDeviceTypeIntegratedGPU} {
		for i, tt := range types {
			if tt == t {
				return i, nil
			}
		}
	}
	if len(types) == 0 {
		return 0, fmt.Errorf("vulkan: %w: the loader found no device", ErrNoGPU)
	}
	return 0, fmt.Errorf("vulkan: %w among %s; a CPU implementation runs only when chosen: --backend vulkan --device N", ErrNoGPU, listNames(types, names))
}

func listNames(types []core1_0.PhysicalDeviceType, names []string) string {
	var s []string
	for i := range types {
		s = append(s, fmt.Sprintf("%d: %s (%s)", i, names[i], devTypeName(types[i])))
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// required limits of the shaders (gemm: 256 invocations, 8 KiB shared; 48
// bytes of push constants at most).
func checkLimits(name string, l *core1_0.PhysicalDeviceLimits) error {
	var miss []string
	if l.MaxComputeWorkGroupInvocations < 256 || l.MaxComputeWorkGroupSize[0] < 256 || l.MaxComputeWorkGroupSize[1] < 16 {
		miss = append(miss, fmt.Sprintf("256 invocations per workgroup (has %d)", l.MaxComputeWorkGroupInvocations))
	}
	if l.MaxComputeSharedMemorySize < 8192 {
		miss = append(miss, fmt.Sprintf("8 KiB shared memory (has %d)", l.MaxComputeSharedMemorySize))
	}
	if l.MaxPushConstantsSize < 64 {
		miss = append(miss, fmt.Sprintf("64 bytes of push constants (has %d)", l.MaxPushConstantsSize))
	}
	if l.MaxStorageBufferRange < 1<<16 {
		miss = append(miss, fmt.Sprintf("64 KiB storage buffer range (has %d)", l.MaxStorageBufferRange))
	}
	if len(miss) > 0 {
		return fmt.Errorf("vulkan: device %s lacks a needed feature: %s", name, strings.Join(miss, ", "))
	}
	return nil
}

func (d *Device) init(o Options) error {
	pds, _, err := d.inst.EnumeratePhysicalDevices()
	if err != nil {
		return fmt.Errorf("vulkan: enumerating devices: %w", err)
	}
	var types []core1_0.PhysicalDeviceType
	var names []string
	var props []*core1_0.PhysicalDeviceProperties
	for _, pd := range pds {
		p, err := pd.Properties()
		if err != nil {
			return fmt.Errorf("vulkan: device properties: %w", err)
		}
		props = append(props, p)
		types = append(types, p.DriverType)
		names = append(names, p.DriverName)
	}
	idx, err := pickDevice(types, names, o.Device)
	if err != nil {
		return err
	}
	d.index, d.pd, d.props = idx, pds[idx], props[idx]
	if err := checkLimits(d.props.DriverName, d.props.Limits); err != nil {
		return err
	}
	d.qfi = -1
	for i, q := range d.pd.QueueFamilyProperties() {
		if q.QueueFlags&core1_0.QueueCompute != 0 {
			d.qfi = i
			break
		}
	}
	if d.qfi < 0 {
		return fmt.Errorf("vulkan: device %s lacks a needed feature: no compute queue", d.props.DriverName)
	}
	if err := d.pickMemory(o.ForceStaging); err != nil {
		return err
	}
	d.maxBind = d.props.Limits.MaxStorageBufferRange
	if o.MaxBindBytes > 0 && o.MaxBindBytes < d.maxBind {
		d.maxBind = o.MaxBindBytes
	}
	d.align = max(d.props.Limits.MinStorageBufferOffsetAlignment, 4)
	if exts, _, err := d.pd.EnumerateDeviceExtensionProperties(); err == nil {
		_, d.coopMat = exts["VK_KHR_cooperative_matrix"]
	}

	d.dev, _, err = d.pd.CreateDevice(nil, core1_0.DeviceCreateInfo{
		QueueCreateInfos: []core1_0.DeviceQueueCreateInfo{{QueueFamilyIndex: d.qfi, QueuePriorities: []float32{1}}}})
	if err != nil {
		return fmt.Errorf("vulkan: creating device %s: %w", d.props.DriverName, err)
	}
	d.queue = d.dev.GetQueue(d.qfi, 0)
	d.cpool, _, err = d.dev.CreateCommandPool(nil, core1_0.CommandPoolCreateInfo{QueueFamilyIndex: d.qfi,
		Flags: core1_0.CommandPoolCreateResetBuffer})
	if err != nil {
		return fmt.Errorf("vulkan: command pool: %w", err)
	}
	cbs, _, err := d.dev.AllocateCommandBuffers(core1_0.CommandBufferAllocateInfo{CommandPool: d.cpool,
		Level: core1_0.CommandBufferLevelPrimary, CommandBufferCount: 1})
	if err != nil {
		return fmt.Errorf("vulkan: command buffer: %w", err)
	}
	d.cb = cbs[0]
	d.fence, _, err = d.dev.CreateFence(nil, core1_0.FenceCreateInfo{})
	if err != nil {
		return fmt.Errorf("vulkan: fence: %w", err)
	}
	d.dpool, _, err = d.dev.CreateDescriptorPool(nil, core1_0.DescriptorPoolCreateInfo{MaxSets: setsPerBatch,
		Flags:     core1_0.DescriptorPoolCreateFreeDescriptorSet,
		PoolSizes: []core1_0.DescriptorPoolSize{{Type: core1_0.DescriptorTypeStorageBuffer, DescriptorCount: 8 * setsPerBatch}}})
	if err != nil {
		return fmt.Errorf("vulkan: descriptor pool: %w", err)
	}
	d.dummy, err = d.alloc(F32, 4)
	return err
}

// pickMemory chooses a device-local memory type of the largest device-local
// heap (mapped directly when it is also host-visible and coherent, as on
// integrated GPUs and lavapipe) and a host-visible coherent type for staging.
func (d *Device) pickMemory(forceStaging bool) error {
	mp := d.pd.MemoryProperties()
	d.memType, d.stageType = -1, -1
	best := -1
	for i, t := range mp.MemoryTypes {
		if t.PropertyFlags&core1_0.MemoryPropertyDeviceLocal == 0 {
			continue
		}
		h := mp.MemoryHeaps[t.HeapIndex].Size
		if h > best {
			best, d.memType = h, i
		}
	}
	hc := core1_0.MemoryPropertyHostVisible | core1_0.MemoryPropertyHostCoherent
	for i, t := range mp.MemoryTypes {
		if t.PropertyFlags&hc == hc {
			d.stageType = i
			break
		}
	}
	if d.memType < 0 { // no device-local type: use host memory
		d.memType = d.stageType
	}
	if d.memType < 0 || d.stageType < 0 {
		return fmt.Errorf("vulkan: device %s lacks a needed feature: no usable memory type", d.props.DriverName)
	}
	d.heapSize = mp.MemoryHeaps[mp.MemoryTypes[d.memType].HeapIndex].Size
	d.mapped = !forceStaging && mp.MemoryTypes[d.memType].PropertyFlags&hc == hc
	return nil
}

// Name is the device name reported by the driver.
func (d *Device) Name() string { return d.props.DriverName }

// Index is the device's index in the loader's list.
func (d *Device) Index() int { return d.index }

// Type is "discrete GPU", "integrated GPU", "CPU", ...
func (d *Device) Type() string { return devTypeName(d.props.DriverType) }

// Submits is the number of command batches submitted so far.
func (d *Device) Submits() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.submits
}

// Dispatches is the number of dispatches recorded so far.
func (d *Device) Dispatches() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ndispatches
}

// ValidationMessages returns the validation layer's warnings and errors so
// far (Options.Validation).
func (d *Device) ValidationMessages() []string {
	d.vmu.Lock()
	defer d.vmu.Unlock()
	return append([]string(nil), d.vmsg...)
}

// Close waits for the device and frees everything.
func (d *Device) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dev != nil {
		d.dev.WaitIdle()
		// Every buffer still allocated (scratch, arenas, tables and the
		// user's), so that no Vulkan object outlives the device.
		all := make([]*Buffer, 0, len(d.live))
		for b := range d.live {
			all = append(all, b)
		}
		for _, b := range all {
			b.free()
		}
		d.transient, d.deferred = nil, nil
		d.freeSets()
		names := make([]string, 0, len(d.pipes))
		for n := range d.pipes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			d.pipes[n].destroy(d.dev)
		}
		if d.dpool != nil {
			d.dpool.Destroy(nil)
		}
		if d.fence != nil {
			d.fence.Destroy(nil)
		}
		if d.cpool != nil {
			d.cpool.Destroy(nil)
		}
		d.dev.Destroy(nil)
		d.dev = nil
	}
	if d.messenger != nil {
		d.messenger.Destroy(nil)
		d.messenger = nil
	}
	if d.inst != nil {
		d.inst.Destroy(nil)
		d.inst = nil
	}
}
