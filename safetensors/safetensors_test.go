package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/hub"
)

// build makes a safetensors image from a header string and n data bytes.
func build(hdr string, data []byte) []byte {
	b := make([]byte, 8, 8+len(hdr)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, data...)
}

func TestParseHeaderErrors(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}}`
	if h, err := ParseHeader("x", build(ok, make([]byte, 12)), int64(len(build(ok, make([]byte, 12))))); err != nil {
		t.Fatalf("valid header: %v", err)
	} else if len(h.Tensors) != 2 || h.Tensors[0].Name != "a" || h.Tensors[1].Name != "b" {
		t.Errorf("tensors = %+v", h.Tensors)
	}
	cases := []struct {
		name, hdr string
		data      int
		want      []string
	}{
		{"short", "", -1, []string{"shorter than"}},
		{"notjson", `{"a": nope}`, 0, []string{`tensor "a"`, "invalid character"}},
		{"array", `[1,2]`, 0, []string{"not a JSON object"}},
		{"dtype", `{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`, 1, []string{`tensor "w"`, "unknown dtype", "Q4"}},
		{"size", `{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8, []string{`tensor "w"`, "needs 12 bytes"}},
		{"range", `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4, []string{`tensor "w"`, "run past"}},
		{"reversed", `{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4, []string{`tensor "w"`, "bad data_offsets"}},
		{"negative", `{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4, []string{`tensor "w"`, "negative"}},
		{"overlap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8, []string{"overlaps"}},
		{"gap", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12, []string{`tensor "b"`, "gap"}},
		{"uncovered", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8, []string{"cover 4 of the 8"}},
		{"dup", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4, []string{"twice"}},
		{"meta", `{"__metadata__":{"format":1}}`, 0, []string{"__metadata__"}},
		{"unknownfield", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4, []string{`tensor "a"`, "unknown field"}},
		{"missingfield", `{"a":{"dtype":"F32","shape":[1]}}`, 4, []string{`tensor "a"`, "data_offsets"}},
		{"offsets3", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4, []string{`tensor "a"`, "[begin, end]"}},
		{"overflow", `{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, 8, []string{"overflows"}},
		{"trailing", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}xx`, 4, []string{"trailing"}},
	}
	for _, c := range cases {
		var b []byte
		if c.data < 0 {
			b = []byte{1, 2, 3}
		} else {
			b = build(c.hdr, make([]byte, c.data))
		}
		_, err := ParseHeader("file.st", b, int64(len(b)))
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), "file.st") {
			t.Errorf("%s: error does not name the file: %v", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
	// Header length larger than the file.
	b := build(ok, make([]byte, 12))
	binary.LittleEndian.PutUint64(b, 1<<40)
	if _, err := ParseHeader("file.st", b, int64(len(b))); err == nil || !strings.Contains(err.Error(), "exceeds the file size") {
		t.Errorf("huge header length: %v", err)
	}
	// A truncated file: the data section is short.
	b = build(ok, make([]byte, 12))
	if _, err := ParseHeader("file.st", b[:len(b)-2], int64(len(b)-2)); err == nil || !strings.Contains(err.Error(), "run past") {
		t.Errorf("truncated: %v", err)
	}
}

func TestConversions(t *testing.T) {
	f16 := []uint16{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0000, 0x8000, 0x7C00, 0x3555}
	want := []float32{1, -2, 65504, 5.9604645e-08, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), 0.33325195}
	b := make([]byte, 2*len(f16))
	for i, v := range f16 {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	got, err := ToFloat32(b, F16)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("f16 %#04x = %g, want %g", f16[i], got[i], want[i])
		}
	}
	bf := []uint16{0x3F80, 0xC000, 0x4049, 0x0000}
	wantBF := []float32{1, -2, 3.140625, 0}
	for i, v := range bf {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	got, _ = ToFloat32(b[:8], BF16)
	if !reflect.DeepEqual(got, wantBF) {
		t.Errorf("bf16 = %v", got)
	}
	// Rounding to nearest even.
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3F800000, 0x3F80}, {0x3F808000, 0x3F80}, {0x3F818000, 0x3F82}, {0x3F808001, 0x3F81}, {0x3F807FFF, 0x3F80},
	} {
		if g := BF16FromFloat32(math.Float32frombits(c.in)); g != c.want {
			t.Errorf("BF16FromFloat32(%#x) = %#x, want %#x", c.in, g, c.want)
		}
	}
	if g := BF16FromFloat32(float32(math.NaN())); g&0x7f80 != 0x7f80 || g&0x7f == 0 {
		t.Errorf("NaN -> %#x", g)
	}
	if _, err := ToFloat32(b, "I32"); err == nil {
		t.Error("I32 converted")
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	a := []float32{1, -2.5, 3.25, float32(math.Inf(-1)), 1e-30, 7}
	bv := []float32{1, 3.140625, -0.5}
	err := WriteFile(p, []Tensor{
		{Name: "z.weight", DType: F32, Shape: []int64{2, 3}, Data: a},
		{Name: "a.bf", DType: BF16, Shape: []int64{3}, Data: bv},
		{Name: "empty", DType: F32, Shape: []int64{0, 4}, Data: nil},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	n := binary.LittleEndian.Uint64(raw)
	if (8+n)%8 != 0 {
		t.Errorf("data starts at %d, not 8-aligned", 8+n)
	}
	if want := 8 + n + 6*4 + 3*2; uint64(len(raw)) != want {
		t.Errorf("file is %d bytes, want %d", len(raw), want)
	}
	// Hand-computed: the first F32 value sits right after the header.
	if v := math.Float32frombits(binary.LittleEndian.Uint32(raw[8+n:])); v != 1 {
		t.Errorf("first value %g", v)
	}
	if v := binary.LittleEndian.Uint16(raw[8+n+24+2:]); v != 0x4049 {
		t.Errorf("bf16 value %#x", v)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	names := []string{}
	for _, ti := range f.Tensors {
		names = append(names, ti.Name)
	}
	if !reflect.DeepEqual(names, []string{"z.weight", "a.bf", "empty"}) {
		t.Errorf("order = %v", names)
	}
	got, info, err := f.Float32("z.weight")
	if err != nil || !reflect.DeepEqual(got, a) || !reflect.DeepEqual(info.Shape, []int64{2, 3}) {
		t.Errorf("z.weight = %v %+v %v", got, info, err)
	}
	got, _, err = f.Float32("a.bf")
	if err != nil || !reflect.DeepEqual(got, bv) {
		t.Errorf("a.bf = %v %v", got, err)
	}
	got, _, err = f.Float32("empty")
	if err != nil || len(got) != 0 {
		t.Errorf("empty = %v %v", got, err)
	}
	if _, _, err := f.Float32("nope"); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing tensor error = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("stray files: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "bad"), []Tensor{{Name: "w", DType: F32, Shape: []int64{3}, Data: []float32{1}}}, nil); err == nil || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("shape mismatch error = %v", err)
	}
	if err := WriteFile(filepath.Join(dir, "bad"), []Tensor{{Name: "w", DType: F16, Shape: []int64{1}, Data: []float32{1}}}, nil); err == nil {
		t.Error("F16 write accepted")
	}
	// Truncating the file is caught on open.
	os.WriteFile(p+".cut", raw[:len(raw)-3], 0o644)
	if _, err := Open(p + ".cut"); err == nil || !strings.Contains(err.Error(), p+".cut") {
		t.Errorf("truncated file error = %v", err)
	}
}

func TestIndex(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), []Tensor{{Name: "a", DType: F32, Shape: []int64{1}, Data: []float32{1}}}, nil))
	must(WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{{Name: "b", DType: F32, Shape: []int64{2}, Data: []float32{2, 3}}}, nil))
	idx := filepath.Join(dir, IndexName)
	os.WriteFile(idx, []byte(`{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`), 0o644)
	s, err := OpenDir(dir)
	must(err)
	got, _, err := s.Float32("b")
	if err != nil || !reflect.DeepEqual(got, []float32{2, 3}) {
		t.Errorf("b = %v %v", got, err)
	}
	if _, _, err := s.Float32("c"); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("missing = %v", err)
	}
	s.Close()
	os.WriteFile(idx, []byte(`{"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`), 0o644)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("wrong shard error = %v", err)
	}
	os.WriteFile(idx, []byte(`{"weight_map":{"a":"../x.safetensors"}}`), 0o644)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "bad shard") {
		t.Errorf("bad shard error = %v", err)
	}
	os.WriteFile(idx, []byte(`{"weight_map":{"b":"model-00002-of-00002.safetensors"}}`), 0o644)
	must(WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{{Name: "b", DType: F32, Shape: []int64{2}, Data: []float32{2, 3}}, {Name: "c", DType: F32, Shape: []int64{1}, Data: []float32{2}}}, nil))
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), `"c"`) {
		t.Errorf("unlisted tensor error = %v", err)
	}
	if _, err := OpenDir(t.TempDir()); err == nil {
		t.Error("empty dir opened")
	}
}

// TestTinyStories checks the real TinyStories-656K file against facts from
// the mirror README and values computed independently with numpy.
func TestTinyStories(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR is not set")
	}
	p := filepath.Join(hub.Mirror(), "models/raincandy-u/TinyStories-656K/model.safetensors")
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.DataStart != 2168 || len(f.Tensors) != 20 {
		t.Errorf("DataStart %d, %d tensors", f.DataStart, len(f.Tensors))
	}
	if f.Metadata["model.embed_tokens.weight"] != "lm_head.weight" || f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	w, info, err := f.Float32("lm_head.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info.Shape, []int64{2048, 128}) || info.Begin != 0 || info.End != 1048576 {
		t.Errorf("lm_head info %+v", info)
	}
	if w[0] != -0.68359375 || w[1] != -0.02587890625 || w[2] != 0.58984375 {
		t.Errorf("lm_head[:3] = %v", w[:3])
	}
	sum := 0.0
	for _, v := range w {
		sum += float64(v)
	}
	if math.Abs(sum-2512.834466814995) > 1e-6 {
		t.Errorf("lm_head sum %v", sum)
	}
	d, _, err := f.Float32("model.layers.1.mlp.down_proj.weight")
	if err != nil || d[0] != -0.17578125 || d[1] != -0.578125 || d[len(d)-1] != -0.1376953125 {
		t.Errorf("down_proj = %v.. %v", d[:2], err)
	}
}
