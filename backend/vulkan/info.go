//go:build vulkan && cgo

package vulkan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vkngwrapper/core/v2"
	"github.com/vkngwrapper/core/v2/common"
	"github.com/vkngwrapper/core/v2/core1_0"
)

// extensions worth showing (all are counted).
var notableExt = []string{"VK_KHR_cooperative_matrix", "VK_NV_cooperative_matrix", "VK_KHR_16bit_storage",
	"VK_KHR_shader_float16_int8", "VK_KHR_8bit_storage", "VK_EXT_memory_budget", "VK_KHR_buffer_device_address",
	"VK_EXT_subgroup_size_control", "VK_KHR_maintenance4"}

// Info lists the Vulkan devices with their limits and extensions, for
// `darwinlm info`; an unusable loader or driver is reported, not fatal.
func Info() string {
	var b strings.Builder
	loader, err := core.CreateSystemLoader()
	if err != nil {
		return fmt.Sprintf("vulkan:    no loader: %v", err)
	}
	inst, _, err := loader.CreateInstance(nil, core1_0.InstanceCreateInfo{APIVersion: common.Vulkan1_1, ApplicationName: "darwinlm"})
	if err != nil {
		return fmt.Sprintf("vulkan:    no usable driver: %v (VK_DRIVER_FILES=%s)", err, driverFiles())
	}
	defer inst.Destroy(nil)
	pds, _, err := inst.EnumeratePhysicalDevices()
	if err != nil || len(pds) == 0 {
		return fmt.Sprintf("vulkan:    no device (%v)", err)
	}
	var types []core1_0.PhysicalDeviceType
	var names []string
	for i, pd := range pds {
		p, err := pd.Properties()
		if err != nil {
			fmt.Fprintf(&b, "vulkan %d:  properties: %v\n", i, err)
			continue
		}
		types, names = append(types, p.DriverType), append(names, p.DriverName)
		l := p.Limits
		fmt.Fprintf(&b, "vulkan %d:  %s (%s), API %s, driver version 0x%x, vendor 0x%04x device 0x%04x\n",
			i, p.DriverName, devTypeName(p.DriverType), p.APIVersion, uint32(p.DriverVersion), p.VendorID, p.DeviceID)
		fmt.Fprintf(&b, "           maxStorageBufferRange %d MiB, shared memory %d KiB, workgroup invocations %d, push constants %d B, offset alignment %d, timestamp period %g ns\n",
			l.MaxStorageBufferRange>>20, l.MaxComputeSharedMemorySize>>10, l.MaxComputeWorkGroupInvocations,
			l.MaxPushConstantsSize, l.MinStorageBufferOffsetAlignment, l.TimestampPeriod)
		mp := pd.MemoryProperties()
		var heaps []string
		for _, h := range mp.MemoryHeaps {
			s := fmt.Sprintf("%d MiB", h.Size>>20)
			if h.Flags&core1_0.MemoryHeapDeviceLocal != 0 {
				s += " device-local"
			}
			heaps = append(heaps, s)
		}
		fmt.Fprintf(&b, "           memory heaps: %s\n", strings.Join(heaps, ", "))
		if exts, _, err := pd.EnumerateDeviceExtensionProperties(); err == nil {
			var have []string
			for _, e := range notableExt {
				if _, ok := exts[e]; ok {
					have = append(have, e)
				}
			}
			sort.Strings(have)
			if len(have) == 0 {
				have = []string{"none"}
			}
			fmt.Fprintf(&b, "           %d extensions; of note: %s\n", len(exts), strings.Join(have, ", "))
		}
		if err := checkLimits(p.DriverName, p.Limits); err != nil {
			fmt.Fprintf(&b, "           unusable: %v\n", err)
		}
	}
	if idx, err := pickDevice(types, names, -1); err == nil {
		fmt.Fprintf(&b, "vulkan:    auto uses device %d", idx)
	} else {
		fmt.Fprintf(&b, "vulkan:    auto uses the CPU backend (no GPU); --backend vulkan --device N runs on a listed device")
	}
	return b.String()
}
