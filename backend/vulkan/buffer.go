//go:build vulkan && cgo

package vulkan

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/vkngwrapper/core/v2/core1_0"
)

// Buffer is a device buffer of n elements of one DType. Free it when done.
type Buffer struct {
	d     *Device
	dt    DType
	n     int
	bytes int
	buf   core1_0.Buffer
	mem   core1_0.DeviceMemory
	ptr   unsafe.Pointer // mapped memory (host-visible buffers)
	batch uint64         // last batch that used it
	freed bool           // no longer usable
	// released: its Vulkan objects are destroyed (a freed buffer used by
	// the batch being recorded is released by the flush that ends it)
	released bool
}

// View is a window [Off, Off+N) of a buffer's elements; the zero View stands
// for an absent optional operand.
type View struct {
	B      *Buffer
	Off, N int
}

// All is the whole buffer.
func (b *Buffer) All() View { return View{b, 0, b.n} }

// Slice is elements [off, off+n).
func (b *Buffer) Slice(off, n int) View { return View{b, off, n} }

// Len is the number of elements.
func (b *Buffer) Len() int { return b.n }

// DType is the element type.
func (b *Buffer) DType() DType { return b.dt }

// Alloc allocates n elements of type dt on the device (contents undefined).
func (d *Device) Alloc(dt DType, n int) (*Buffer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.alloc(dt, n)
}

func (d *Device) alloc(dt DType, n int) (*Buffer, error) {
	if n <= 0 {
		return nil, fmt.Errorf("vulkan: allocating %d %s elements: size must be positive", n, dt)
	}
	size := (n*dt.size() + 3) &^ 3
	if size > d.heapSize {
		return nil, fmt.Errorf("vulkan: out of device memory: %d MiB requested, the device heap of %s has %d MiB",
			size>>20, d.props.DriverName, d.heapSize>>20)
	}
	b, err := d.newBuffer(size, d.memType, d.mapped)
	if err != nil {
		return nil, err
	}
	b.dt, b.n = dt, n
	return b, nil
}

func (d *Device) newBuffer(size, memType int, mapIt bool) (*Buffer, error) {
	buf, _, err := d.dev.CreateBuffer(nil, core1_0.BufferCreateInfo{Size: size,
		Usage:       core1_0.BufferUsageStorageBuffer | core1_0.BufferUsageTransferSrc | core1_0.BufferUsageTransferDst,
		SharingMode: core1_0.SharingModeExclusive})
	if err != nil {
		return nil, fmt.Errorf("vulkan: creating a buffer of %d MiB: %w", size>>20, err)
	}
	req := buf.MemoryRequirements()
	if req.MemoryTypeBits&(1<<memType) == 0 {
		buf.Destroy(nil)
		return nil, fmt.Errorf("vulkan: device %s lacks a needed feature: storage buffers cannot use memory type %d", d.props.DriverName, memType)
	}
	mem, _, err := d.dev.AllocateMemory(nil, core1_0.MemoryAllocateInfo{AllocationSize: req.Size, MemoryTypeIndex: memType})
	if err != nil {
		buf.Destroy(nil)
		return nil, fmt.Errorf("vulkan: out of device memory? allocating %d MiB on %s: %w", req.Size>>20, d.props.DriverName, err)
	}
	if _, err := buf.BindBufferMemory(mem, 0); err != nil {
		buf.Destroy(nil)
		mem.Free(nil)
		return nil, fmt.Errorf("vulkan: binding buffer memory: %w", err)
	}
	b := &Buffer{d: d, dt: F32, n: size / 4, bytes: size, buf: buf, mem: mem, batch: math.MaxUint64} // not used by any batch yet
	d.live[b] = struct{}{}
	if mapIt {
		p, _, err := mem.Map(0, req.Size, 0)
		if err != nil {
			b.free()
			return nil, fmt.Errorf("vulkan: mapping %d MiB: %w", req.Size>>20, err)
		}
		b.ptr = p
	}
	return b, nil
}

// Free releases the buffer. When the batch being recorded uses it, the
// release waits for the flush that ends that batch (no sync here).
func (b *Buffer) Free() {
	if b == nil || b.freed {
		return
	}
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if b.released {
		return
	}
	if b.batch == d.batch && d.open {
		b.freed = true
		d.deferred = append(d.deferred, b)
		return
	}
	b.free()
}

func (b *Buffer) free() {
	b.freed = true
	if b.released {
		return
	}
	b.released = true
	delete(b.d.live, b)
	if b.ptr != nil {
		b.mem.Unmap()
	}
	b.buf.Destroy(nil)
	b.mem.Free(nil)
}

func (b *Buffer) check(op string, off, n int) error {
	if b == nil || b.freed {
		return fmt.Errorf("vulkan: %s: buffer is nil or freed", op)
	}
	if off < 0 || n < 0 || off+n > b.n {
		return fmt.Errorf("vulkan: %s: elements [%d, %d) outside a buffer of %d", op, off, off+n, b.n)
	}
	return nil
}

// write copies raw bytes to byte offset off (all earlier work that uses the
// buffer is finished first).
func (b *Buffer) write(op string, off int, src []byte) error {
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	return b.writeLocked(off, src)
}

func (b *Buffer) writeLocked(off int, src []byte) error {
	d := b.d
	if err := d.syncBuffer(b); err != nil {
		return err
	}
	if b.ptr != nil {
		copy(unsafe.Slice((*byte)(b.ptr), b.bytes)[off:], src)
		return nil
	}
	for len(src) > 0 { // through the staging buffer
		st, err := d.stage(len(src))
		if err != nil {
			return err
		}
		n := min(len(src), st.bytes)
		copy(unsafe.Slice((*byte)(st.ptr), st.bytes), src[:n])
		if err := d.copyBuffer(st, b, 0, off, n); err != nil {
			return err
		}
		src, off = src[n:], off+n
	}
	return nil
}

func (b *Buffer) read(op string, off int, dst []byte) error {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.syncBuffer(b); err != nil {
		return err
	}
	if b.ptr != nil {
		copy(dst, unsafe.Slice((*byte)(b.ptr), b.bytes)[off:])
		return nil
	}
	for len(dst) > 0 {
		st, err := d.stage(len(dst))
		if err != nil {
			return err
		}
		n := min(len(dst), st.bytes)
		if err := d.copyBuffer(b, st, off, 0, (n+3)&^3); err != nil {
			return err
		}
		copy(dst[:n], unsafe.Slice((*byte)(st.ptr), st.bytes))
		dst, off = dst[n:], off+n
	}
	return nil
}

const stagingMax = 64 << 20

// stage returns the staging buffer, grown up to 64 MiB.
func (d *Device) stage(want int) (*Buffer, error) {
	want = min((want+3)&^3, stagingMax)
	if d.staging != nil && d.staging.bytes >= want {
		return d.staging, nil
	}
	if d.staging != nil {
		d.staging.free()
		d.staging = nil
	}
	st, err := d.newBuffer(want, d.stageType, true)
	if err != nil {
		return nil, err
	}
	d.staging = st
	return st, nil
}

func (d *Device) copyBuffer(src, dst *Buffer, srcOff, dstOff, n int) error {
	if n%4 != 0 || srcOff%4 != 0 || dstOff%4 != 0 {
		return fmt.Errorf("vulkan: staged copies need 4-byte alignment (offset %d/%d, %d bytes)", srcOff, dstOff, n)
	}
	if err := d.begin(); err != nil {
		return err
	}
	if err := d.cb.CmdCopyBuffer(src.buf, dst.buf, []core1_0.BufferCopy{{SrcOffset: srcOff, DstOffset: dstOff, Size: n}}); err != nil {
		return fmt.Errorf("vulkan: copy: %w", err)
	}
	d.barrier()
	return d.flush()
}

// syncBuffer finishes the pending batch if it uses b.
func (d *Device) syncBuffer(b *Buffer) error {
	if d.open && (b.batch == d.batch || b.ptr == nil) {
		return d.flush()
	}
	return nil
}

// Upload copies src into elements [off, off+len(src)) of an F32 buffer.
func (b *Buffer) Upload(off int, src []float32) error {
	if err := b.check("upload", off, len(src)); err != nil {
		return err
	}
	if b.dt != F32 {
		return fmt.Errorf("vulkan: upload: float32 data into a %s buffer", b.dt)
	}
	return b.write("upload", 4*off, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), 4*len(src)))
}

// UploadInt32 copies src into an I32 buffer at element off.
func (b *Buffer) UploadInt32(off int, src []int32) error {
	if err := b.check("upload", off, len(src)); err != nil {
		return err
	}
	if b.dt != I32 {
		return fmt.Errorf("vulkan: upload: int32 data into a %s buffer", b.dt)
	}
	return b.write("upload", 4*off, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), 4*len(src)))
}

// Upload16 copies raw 16-bit values (bf16 or f16 bits) into a BF16/F16
// buffer at an even element offset.
func (b *Buffer) Upload16(off int, src []uint16) error {
	if err := b.check("upload", off, len(src)); err != nil {
		return err
	}
	if b.dt != BF16 && b.dt != F16 {
		return fmt.Errorf("vulkan: upload: 16-bit data into a %s buffer", b.dt)
	}
	if off%2 != 0 && b.ptr == nil {
		return fmt.Errorf("vulkan: upload: 16-bit data at odd offset %d", off)
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(src))), 2*len(src))
	if len(raw)%4 != 0 && b.ptr == nil {
		if off+len(src) != b.n {
			return fmt.Errorf("vulkan: upload: an odd count of 16-bit values (%d) must end at the buffer's end on this device (staged copies move whole words)", len(src))
		}
		raw = append(append([]byte(nil), raw...), 0, 0) // pad into the buffer's rounding slack
	}
	return b.write("upload", 2*off, raw)
}

// Download copies elements [off, off+len(dst)) of an F32 buffer into dst,
// finishing the pending work first.
func (b *Buffer) Download(off int, dst []float32) error {
	if err := b.check("download", off, len(dst)); err != nil {
		return err
	}
	if b.dt != F32 {
		return fmt.Errorf("vulkan: download: %s buffer into float32", b.dt)
	}
	return b.read("download", 4*off, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*len(dst)))
}
