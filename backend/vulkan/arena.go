//go:build vulkan && cgo

package vulkan

// Per-batch arenas and the recorded transfer commands of the
// device-resident interface. Small host data of an operation (token ids,
// rope positions, attention tables, top-k teacher entries) is written into a
// host-visible arena and read by the shaders from there; scratch tensors
// (gathered K/V, probabilities, row losses) come from a device arena. Both
// are bump allocators reset by the flush that ends their batch (the flush
// waits for the device), so nothing is allocated per call and no region is
// reused while a recorded command may still read it.

import (
	"fmt"
	"unsafe"

	"github.com/vkngwrapper/core/v2/core1_0"
)

type arena struct {
	b    *Buffer
	used int // bytes
}

const arenaAlign = 256 // granularity of prepared sizes

func alignUp(n, a int) int { return (n + a - 1) / a * a }

// prepare makes room for an operation that records up to sets dispatches
// and takes hostBytes and scratchBytes from the arenas: it flushes the batch
// when either does not fit, and grows an arena that is too small. After it,
// the operation's own dispatches and arena allocations never flush (which
// would reset the arenas under it).
func (d *Device) prepare(sets, hostBytes, scratchBytes int) error {
	hostBytes = alignUp(hostBytes, arenaAlign)
	scratchBytes = alignUp(scratchBytes, arenaAlign)
	if sets > setsPerBatch {
		return fmt.Errorf("vulkan: an operation of %d dispatches exceeds the batch of %d", sets, setsPerBatch)
	}
	fits := func(a *arena, n int) bool { return n == 0 || (a.b != nil && a.used+n <= a.b.bytes) }
	if d.open && (d.nsets+sets > setsPerBatch || !fits(&d.host, hostBytes) || !fits(&d.scratch, scratchBytes)) {
		if err := d.flush(); err != nil {
			return err
		}
	}
	if err := d.grow(&d.host, hostBytes, d.stageType, true); err != nil {
		return err
	}
	return d.grow(&d.scratch, scratchBytes, d.memType, d.mapped)
}

func (d *Device) grow(a *arena, need, memType int, mapIt bool) error {
	if need == 0 || (a.b != nil && a.used+need <= a.b.bytes) {
		return nil
	}
	// Only reached with an empty arena (prepare flushed) or none yet.
	size := 1 << 20
	if a.b != nil {
		size = 2 * a.b.bytes
		if d.open && a.b.batch == d.batch {
			return fmt.Errorf("vulkan: internal error: growing an arena in use")
		}
		a.b.free()
		a.b = nil
	}
	size = max(size, alignUp(need, 1<<20))
	if size > d.heapSize {
		return fmt.Errorf("vulkan: out of device memory: %d MiB of scratch requested, the device heap of %s has %d MiB",
			size>>20, d.props.DriverName, d.heapSize>>20)
	}
	b, err := d.newBuffer(size, memType, mapIt)
	if err != nil {
		return err
	}
	b.dt = I32
	a.b, a.used = b, 0
	return nil
}

// take returns n 4-byte elements of an arena (prepared). Regions are not
// padded, so that an operation's takes sum to what it prepared: dispatch
// binds any offset (aligned down, the rest in the push constants).
func (d *Device) take(a *arena, n int) (View, error) {
	bytes := 4 * max(n, 1)
	if a.b == nil || a.used+bytes > a.b.bytes {
		return View{}, fmt.Errorf("vulkan: internal error: arena not prepared for %d bytes", bytes)
	}
	v := View{a.b, a.used / 4, n}
	a.used += bytes
	return v, nil
}

// hostData copies 4-byte words into the host arena (prepared).
func (d *Device) hostData(words []byte) (View, error) {
	v, err := d.take(&d.host, len(words)/4)
	if err != nil {
		return View{}, err
	}
	copy(unsafe.Slice((*byte)(d.host.b.ptr), d.host.b.bytes)[4*v.Off:], words)
	return v, nil
}

func int32Bytes(v []int32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

func intsBytes(v []int) []byte {
	w := make([]int32, len(v))
	for i, x := range v {
		w[i] = int32(x)
	}
	return int32Bytes(w)
}

// cmdCopy records a copy of n elements (4-byte) between views; the caller
// holds d.mu and has prepared a set of room.
func (d *Device) cmdCopy(dst, src View, n int) error {
	if n == 0 {
		return nil
	}
	if err := d.begin(); err != nil {
		return err
	}
	if err := d.cb.CmdCopyBuffer(src.B.buf, dst.B.buf, []core1_0.BufferCopy{{SrcOffset: 4 * src.Off, DstOffset: 4 * dst.Off, Size: 4 * n}}); err != nil {
		return fmt.Errorf("vulkan: copy: %w", err)
	}
	src.B.batch, dst.B.batch = d.batch, d.batch
	d.barrier()
	d.ndispatches++
	return nil
}

// cmdCopyRegions records one copy of many regions (byte offsets) from src
// to dst, with one barrier after it.
func (d *Device) cmdCopyRegions(dst, src *Buffer, regs []core1_0.BufferCopy) error {
	if len(regs) == 0 {
		return nil
	}
	if err := d.begin(); err != nil {
		return err
	}
	if err := d.cb.CmdCopyBuffer(src.buf, dst.buf, regs); err != nil {
		return fmt.Errorf("vulkan: copy: %w", err)
	}
	src.batch, dst.batch = d.batch, d.batch
	d.barrier()
	d.ndispatches++
	return nil
}

// cmdFill records v = 0 (n 4-byte elements).
func (d *Device) cmdFill(v View, n int) error {
	if n == 0 {
		return nil
	}
	if err := d.begin(); err != nil {
		return err
	}
	d.cb.CmdFillBuffer(v.B.buf, 4*v.Off, 4*n, 0)
	v.B.batch = d.batch
	d.barrier()
	d.ndispatches++
	return nil
}

// uploadLocked writes src into dst: directly into mapped memory when no
// recorded work uses the buffer, otherwise as a copy from the host arena
// recorded in order (no flush); large uploads into unmapped memory go
// through the staging buffer (which flushes).
func (d *Device) uploadLocked(dst View, src []byte) error {
	b := dst.B
	inBatch := d.open && b.batch == d.batch
	if b.ptr != nil && !inBatch {
		copy(unsafe.Slice((*byte)(b.ptr), b.bytes)[4*dst.Off:], src)
		return nil
	}
	if len(src) > 64<<20 {
		return b.writeLocked(4*dst.Off, src)
	}
	if err := d.prepare(1, len(src), 0); err != nil {
		return err
	}
	hv, err := d.hostData(src)
	if err != nil {
		return err
	}
	return d.cmdCopy(dst, hv, len(src)/4)
}

// downloadLocked copies src into dst after the recorded work.
func (d *Device) downloadLocked(dst []byte, src View) error {
	b := src.B
	if d.open {
		if err := d.flush(); err != nil {
			return err
		}
	}
	if b.ptr != nil {
		copy(dst, unsafe.Slice((*byte)(b.ptr), b.bytes)[4*src.Off:])
		return nil
	}
	off := 4 * src.Off
	for len(dst) > 0 {
		st, err := d.stage(len(dst))
		if err != nil {
			return err
		}
		n := min(len(dst), st.bytes)
		if err := d.copyBuffer(b, st, off, 0, n); err != nil {
			return err
		}
		copy(dst[:n], unsafe.Slice((*byte)(st.ptr), st.bytes))
		dst, off = dst[n:], off+n
	}
	return nil
}
