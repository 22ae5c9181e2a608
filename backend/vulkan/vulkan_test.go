//go:build vulkan && cgo

package vulkan

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vkngwrapper/core/v2/core1_0"

	"github.com/darwinlm/darwinlm-go/backend/cpu"
)

// testDevice is the device index the tests use: $DARWINLM_VULKAN_DEVICE, or
// 0 (lavapipe in CI, where VK_DRIVER_FILES pins it).
func testDevice() int {
	if s := os.Getenv("DARWINLM_VULKAN_DEVICE"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			return n
		}
	}
	return 0
}

// open opens the test device with the validation layer; any validation
// message fails the test. Without a driver the test skips; without the layer
// it skips unless DARWINLM_VULKAN_REQUIRE_VALIDATION is set (CI sets it).
func open(t testing.TB, o Options) *Device {
	t.Helper()
	o.Device = testDevice()
	o.Validation = os.Getenv("DARWINLM_VULKAN_NO_VALIDATION") == ""
	d, err := Open(o)
	if err != nil {
		if strings.Contains(err.Error(), "validation requested") && os.Getenv("DARWINLM_VULKAN_REQUIRE_VALIDATION") == "" {
			t.Skipf("%v", err)
		}
		if strings.Contains(err.Error(), "creating instance") || strings.Contains(err.Error(), "no device") {
			t.Skipf("no usable Vulkan driver: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		if m := d.ValidationMessages(); len(m) > 0 {
			t.Errorf("Vulkan validation:\n%s", strings.Join(m, "\n"))
		}
	})
	return d
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func upload(t testing.TB, d *Device, v []float32) *Buffer {
	t.Helper()
	b, err := d.Alloc(F32, len(v))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(0, v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Free)
	return b
}

func download(t testing.TB, b *Buffer) []float32 {
	t.Helper()
	out := make([]float32, b.Len())
	if err := b.Download(0, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// gemmRef is a float64 reference with the per-element scale Σ|a·b| that
// bounds float32 rounding.
func gemmRef(tA, tB bool, c0, a, b []float32, m, n, k int, acc bool) (ref, scale []float64) {
	ref, scale = make([]float64, m*n), make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sc float64
			if acc {
				s, sc = float64(c0[i*n+j]), math.Abs(float64(c0[i*n+j]))
			}
			for p := 0; p < k; p++ {
				av, bv := a[i*k+p], b[p*n+j]
				if tA {
					av = a[p*m+i]
				}
				if tB {
					bv = b[j*k+p]
				}
				s += float64(av) * float64(bv)
				sc += math.Abs(float64(av) * float64(bv))
			}
			ref[i*n+j], scale[i*n+j] = s, sc
		}
	}
	return
}

// within reports the worst |got−want| / scale over the elements.
func worst(got, want []float32, scale []float64) float64 {
	w := 0.0
	for i := range got {
		s := math.Max(scale[i], 1e-30)
		w = math.Max(w, math.Abs(float64(got[i])-float64(want[i]))/s)
	}
	return w
}

// The tolerance against the CPU backend: |vk − cpu| ≤ 1e-5·Σ|terms| per
// element (both round float32 sums in different orders).
const tol = 1e-5

var shapes = [][3]int{{1, 1, 1}, {37, 29, 83}, {5, 131, 7}, {130, 67, 300}, {64, 64, 64}, {1, 97, 65}, {71, 1, 33}}

func TestGemmMatchesCPU(t *testing.T) {
	d := open(t, Options{})
	c := cpu.New()
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, v := range []struct {
			name   string
			tA, tB bool
			cpu    func(c, a, b []float32, m, n, k int, acc bool)
		}{{"NT", false, true, c.MatMulNT}, {"NN", false, false, c.MatMulNN}, {"TN", true, false, c.MatMulTN}} {
			for _, acc := range []bool{false, true} {
				a, b, c0 := randVec(r, m*k), randVec(r, n*k), randVec(r, m*n)
				ba, bb, bc := upload(t, d, a), upload(t, d, b), upload(t, d, c0)
				if err := d.Gemm(v.tA, v.tB, bc.All(), ba.All(), bb.All(), m, n, k, acc); err != nil {
					t.Fatal(err)
				}
				got := download(t, bc)
				want := append([]float32(nil), c0...)
				v.cpu(want, a, b, m, n, k, acc)
				ref, scale := gemmRef(v.tA, v.tB, c0, a, b, m, n, k, acc)
				if e := worst(got, want, scale); e > tol {
					t.Errorf("%s %v acc=%v: vs CPU %.2e > %g", v.name, sh, acc, e, tol)
				}
				r64 := make([]float32, len(ref))
				for i := range ref {
					r64[i] = float32(ref[i])
				}
				if e := worst(got, r64, scale); e > tol {
					t.Errorf("%s %v acc=%v: vs float64 %.2e", v.name, sh, acc, e)
				}
			}
		}
	}
}

// TestGemmSplit lowers the binding range to 4 KiB so that every operand is
// split into windows (over m, n and k), including unaligned window starts.
func TestGemmSplit(t *testing.T) {
	d := open(t, Options{MaxBindBytes: 4096})
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][3]int{{37, 29, 83}, {70, 40, 150}, {3, 2000, 5}} {
		m, n, k := sh[0], sh[1], sh[2]
		for _, tt := range [][2]bool{{false, true}, {false, false}, {true, false}} {
			a, b, c0 := randVec(r, m*k), randVec(r, n*k), randVec(r, m*n)
			// an offset view exercises the alignment slack
			ba := upload(t, d, append(make([]float32, 3), a...))
			bb, bc := upload(t, d, b), upload(t, d, c0)
			before, bd := d.Submits(), d.Dispatches()
			if err := d.Gemm(tt[0], tt[1], bc.All(), ba.Slice(3, m*k), bb.All(), m, n, k, true); err != nil {
				t.Fatal(err)
			}
			got := download(t, bc)
			nd, ns := d.Dispatches()-bd, d.Submits()-before
			if nd < 2 || ns > 1+nd/setsPerBatch {
				t.Errorf("split gemm: %d dispatches in %d submits", nd, ns)
			}
			ref, scale := gemmRef(tt[0], tt[1], c0, a, b, m, n, k, true)
			r32 := make([]float32, len(ref))
			for i := range ref {
				r32[i] = float32(ref[i])
			}
			if e := worst(got, r32, scale); e > tol {
				t.Errorf("%v %v: %.2e", sh, tt, e)
			}
		}
	}
}

func TestGemmBlocks(t *testing.T) {
	for _, c := range []struct {
		tA, tB       bool
		m, n, k, lim int
	}{
		{false, true, 1000, 1000, 1000, 4096}, {true, false, 7, 9000, 3, 4096}, {false, false, 1, 1, 100000, 1000}, {false, true, 3, 5000, 5000, 1000},
	} {
		bm, bn, bk, err := gemmBlocks(c.tA, c.tB, c.m, c.n, c.k, c.lim, c.lim)
		if err != nil {
			t.Fatal(err)
		}
		spans := []int{span(bm, bn, c.n)}
		if c.tA {
			spans = append(spans, span(bk, bm, c.m))
		} else {
			spans = append(spans, span(bm, bk, c.k))
		}
		if c.tB {
			spans = append(spans, span(bn, bk, c.k))
		} else {
			spans = append(spans, span(bk, bn, c.n))
		}
		for _, s := range spans {
			if s > c.lim || bm < 1 || bn < 1 || bk < 1 {
				t.Errorf("%+v: blocks %d %d %d span %d", c, bm, bn, bk, s)
			}
		}
	}
}

func bf16(x float32) uint16 { return uint16(math.Float32bits(x) >> 16) } // truncation: the test only needs exact bf16 values

func TestGemm16BitWeights(t *testing.T) {
	// 2 KiB: split windows at odd 16-bit offsets; staging: an odd count of
	// 16-bit values copied as whole words
	for _, o := range []Options{{}, {MaxBindBytes: 2048}, {ForceStaging: true}} {
		gemm16(t, open(t, o), o.MaxBindBytes)
	}
}

func gemm16(t *testing.T, d *Device, lim int) {
	c := cpu.New()
	r := rand.New(rand.NewPCG(5, 6))
	m, n, k := 19, 45, 77
	a, bw := randVec(r, m*k), randVec(r, n*k)
	for _, dt := range []DType{BF16, F16} {
		raw := make([]uint16, n*k)
		wide := make([]float32, n*k)
		for i, x := range bw {
			if dt == BF16 {
				raw[i] = bf16(x)
				wide[i] = math.Float32frombits(uint32(raw[i]) << 16)
			} else {
				raw[i], wide[i] = f16(x)
			}
		}
		bb, err := d.Alloc(dt, n*k)
		if err != nil {
			t.Fatal(err)
		}
		defer bb.Free()
		if err := bb.Upload16(0, raw); err != nil {
			t.Fatal(err)
		}
		ba, bc := upload(t, d, a), upload(t, d, make([]float32, m*n))
		if err := d.Gemm(false, true, bc.All(), ba.All(), bb.All(), m, n, k, false); err != nil {
			t.Fatal(err)
		}
		got := download(t, bc)
		want := make([]float32, m*n)
		if dt == BF16 {
			c.MatMulNTBF16(want, a, raw, m, n, k, false)
		} else {
			c.MatMulNT(want, a, wide, m, n, k, false)
		}
		_, scale := gemmRef(false, true, nil, a, wide, m, n, k, false)
		if e := worst(got, want, scale); e > tol {
			t.Errorf("%s weights (bind limit %d): %.2e", dt, lim, e)
		}
	}
	if err := d.Gemm(false, false, View{}, View{}, View{}, 1, 1, 1, false); err == nil {
		t.Error("missing operands: no error")
	}
}

// f16 rounds x to IEEE half (for test values |x| < 8, normal range) and
// returns its bits and value.
func f16(x float32) (uint16, float32) {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	man := b & 0x7fffff
	if exp <= 0 {
		return sign, 0
	}
	h := sign | uint16(exp)<<10 | uint16(man>>13)
	e := int(h>>10&0x1f) - 15
	v := float32(math.Ldexp(1+float64(h&0x3ff)/1024, e))
	if sign != 0 {
		v = -v
	}
	return h, v
}

func TestBackendHostSlices(t *testing.T) {
	d := open(t, Options{})
	be := &Backend{d: d}
	c := cpu.New()
	r := rand.New(rand.NewPCG(7, 8))
	n, k := 45, 123
	x := randVec(r, k*n)
	h0 := randVec(r, n*n)
	for i := 0; i < n; i++ { // symmetric start
		for j := 0; j < i; j++ {
			h0[i*n+j] = h0[j*n+i]
		}
	}
	got, want := append([]float32(nil), h0...), append([]float32(nil), h0...)
	be.SyrkTN(got, x, n, k)
	c.SyrkTN(want, x, n, k)
	_, scale := gemmRef(true, false, h0, x, x, n, n, k, true)
	if e := worst(got, want, scale); e > tol {
		t.Errorf("SyrkTN: %.2e", e)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if got[i*n+j] != got[j*n+i] {
				t.Fatalf("SyrkTN not symmetric at %d,%d", i, j)
			}
		}
	}
	m := 33
	a, b := randVec(r, m*k), randVec(r, n*k)
	g, w := make([]float32, m*n), make([]float32, m*n)
	be.MatMulNT(g, a, b, m, n, k, false)
	c.MatMulNT(w, a, b, m, n, k, false)
	_, scale = gemmRef(false, true, nil, a, b, m, n, k, false)
	if e := worst(g, w, scale); e > tol {
		t.Errorf("MatMulNT: %.2e", e)
	}
	be.MatMulNN(g, a, b, m, n, 0, false) // k = 0 zeroes C
	for _, v := range g {
		if v != 0 {
			t.Fatal("k = 0 did not zero C")
		}
	}
	for _, s := range be.sc {
		s.Free()
	}
}

func TestStagingPath(t *testing.T) {
	d := open(t, Options{ForceStaging: true})
	if d.mapped {
		t.Fatal("ForceStaging ignored")
	}
	r := rand.New(rand.NewPCG(9, 10))
	v := randVec(r, 1001)
	b := upload(t, d, v)
	got := make([]float32, 500)
	if err := b.Download(301, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != v[301+i] {
			t.Fatalf("staged round trip differs at %d", i)
		}
	}
	m, n, k := 9, 11, 13
	a, bb := upload(t, d, randVec(r, m*k)), upload(t, d, randVec(r, n*k))
	c := upload(t, d, make([]float32, m*n))
	if err := d.Gemm(false, true, c.All(), a.All(), bb.All(), m, n, k, false); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, m*n)
	cpu.New().MatMulNT(want, download(t, a), download(t, bb), m, n, k, false)
	_, scale := gemmRef(false, true, nil, download(t, a), download(t, bb), m, n, k, false)
	if e := worst(download(t, c), want, scale); e > tol {
		t.Errorf("gemm through staging: %.2e", e)
	}
}

func TestBadInput(t *testing.T) {
	d := open(t, Options{})
	if _, err := d.Alloc(F32, 1<<50); err == nil || !strings.Contains(err.Error(), "out of device memory") {
		t.Errorf("huge allocation: %v", err)
	}
	if _, err := d.Alloc(F32, 0); err == nil {
		t.Error("empty allocation: no error")
	}
	b, err := d.Alloc(F32, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(5, make([]float32, 6)); err == nil {
		t.Error("upload past the end: no error")
	}
	if err := b.UploadInt32(0, []int32{1}); err == nil {
		t.Error("int32 into f32: no error")
	}
	if err := d.Gemm(false, true, b.All(), b.All(), b.All(), 4, 4, 4, false); err == nil {
		t.Error("operands too small: no error")
	}
	if err := d.RMSNorm(b.All(), View{}, b.All(), b.Slice(0, 3), 2, 5, 1e-5); err == nil {
		t.Error("short weight: no error")
	}
	b.Free()
	b.Free() // idempotent
	if err := b.Upload(0, []float32{1}); err == nil {
		t.Error("upload into a freed buffer: no error")
	}
	if _, err := Open(Options{Device: 99}); err == nil || !strings.Contains(err.Error(), "--device 99") {
		t.Errorf("device 99: %v", err)
	}
}

func TestNoDriver(t *testing.T) {
	t.Setenv("VK_DRIVER_FILES", "/nonexistent.json")
	t.Setenv("VK_ICD_FILENAMES", "/nonexistent.json")
	_, err := Open(Options{Device: -1})
	if err == nil {
		t.Fatal("no driver: no error")
	}
	// The message says what failed and where the driver was looked for.
	if !strings.Contains(err.Error(), "creating instance") || !strings.Contains(err.Error(), "/nonexistent.json") {
		t.Errorf("no driver: unclear error %q", err)
	}
	t.Log(err)
}

func TestPickDevice(t *testing.T) {
	cpuT, dis, igp := core1_0.PhysicalDeviceTypeCPU, core1_0.PhysicalDeviceTypeDiscreteGPU, core1_0.PhysicalDeviceTypeIntegratedGPU
	if _, err := pickDevice([]core1_0.PhysicalDeviceType{cpuT}, []string{"llvmpipe"}, -1); !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "--device") {
		t.Errorf("CPU only: %v", err)
	}
	if i, err := pickDevice([]core1_0.PhysicalDeviceType{cpuT, igp, dis}, []string{"a", "b", "c"}, -1); err != nil || i != 2 {
		t.Errorf("discrete first: %d %v", i, err)
	}
	if i, err := pickDevice([]core1_0.PhysicalDeviceType{cpuT, igp}, []string{"a", "b"}, -1); err != nil || i != 1 {
		t.Errorf("integrated: %d %v", i, err)
	}
	if i, err := pickDevice([]core1_0.PhysicalDeviceType{cpuT, igp}, []string{"a", "b"}, 0); err != nil || i != 0 {
		t.Errorf("explicit CPU: %d %v", i, err)
	}
	if _, err := pickDevice(nil, nil, -1); !errors.Is(err, ErrNoGPU) {
		t.Errorf("no devices: %v", err)
	}
	l := &core1_0.PhysicalDeviceLimits{MaxComputeWorkGroupInvocations: 128, MaxComputeWorkGroupSize: [3]int{128, 128, 64},
		MaxComputeSharedMemorySize: 4096, MaxPushConstantsSize: 128, MaxStorageBufferRange: 1 << 27}
	if err := checkLimits("tiny", l); err == nil || !strings.Contains(err.Error(), "lacks a needed feature") {
		t.Errorf("weak device: %v", err)
	}
}

// TestValidationCatches proves the messenger works: an invalid call (a
// zero-sized buffer) must produce a validation message.
func TestValidationCatches(t *testing.T) {
	if os.Getenv("DARWINLM_VULKAN_NO_VALIDATION") != "" {
		t.Skip("validation disabled")
	}
	d, err := Open(Options{Device: testDevice(), Validation: true})
	if err != nil {
		t.Skipf("%v", err)
	}
	defer d.Close()
	buf, _, _ := d.dev.CreateBuffer(nil, core1_0.BufferCreateInfo{Size: 0, Usage: core1_0.BufferUsageStorageBuffer,
		SharingMode: core1_0.SharingModeExclusive})
	if buf != nil {
		buf.Destroy(nil)
	}
	m := d.ValidationMessages()
	if len(m) == 0 {
		t.Fatal("an invalid call produced no validation message")
	}
	t.Logf("caught: %.120s", m[0])
}
