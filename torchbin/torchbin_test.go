package torchbin

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const td = "../model/testdata/torchbin"

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(td, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// views.bin: tensors that are views of one storage at several offsets, a
// scalar, int64 and float16 tensors.
func TestViews(t *testing.T) {
	f, err := Open(filepath.Join(td, "views.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]struct {
		shape []int64
		vals  []float32
	}{
		"all":    {[]int64{3, 4}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		"row1":   {[]int64{4}, []float32{4, 5, 6, 7}},
		"mid":    {[]int64{4}, []float32{2, 3, 4, 5}},
		"col":    {[]int64{3, 1}, []float32{5, 6, 7}},
		"scalar": {[]int64{}, []float32{7}},
		"half":   {[]int64{3}, []float32{0.5, -2, 65504}},
	}
	var names []string
	for _, tt := range f.Tensors {
		names = append(names, tt.Name)
	}
	if strings.Join(names, ",") != "all,row1,mid,col,scalar,ids,half" {
		t.Fatalf("tensors %v", names)
	}
	for n, w := range want {
		v, ti, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ti.Shape, w.shape) || len(v) != len(w.vals) {
			t.Fatalf("%s: shape %v, %d values", n, ti.Shape, len(v))
		}
		for i := range v {
			if v[i] != w.vals[i] {
				t.Fatalf("%s: %v, want %v", n, v, w.vals)
			}
		}
	}
	b, ti, err := f.Bytes("ids")
	if err != nil || ti.DType != "I64" || len(b) != 24 {
		t.Fatalf("ids: %v %v %d", err, ti, len(b))
	}
	if got := int64(binary.LittleEndian.Uint64(b[8:])); got != -1 {
		t.Fatalf("ids[1] = %d, want -1", got)
	}
	if _, _, err := f.Float32("ids"); err == nil || !strings.Contains(err.Error(), "I64") {
		t.Fatalf("float32 of an int64 tensor: %v", err)
	}
	f.Close()
	if _, _, err := f.Bytes("all"); err == nil {
		t.Fatal("Bytes after Close")
	}
}

func TestParameter(t *testing.T) {
	f, err := Parse("param.bin", read(t, "param.bin"))
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := f.Float32("p")
	if err != nil || len(v) != 2 || v[0] != 1.5 || v[1] != 2.5 {
		t.Fatalf("p = %v, %v", v, err)
	}
}

func wantErr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one with %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q lacks %q", err, s)
		}
	}
}

func TestBadFiles(t *testing.T) {
	_, err := Open(filepath.Join(td, "noncontig.bin"))
	wantErr(t, err, "noncontig.bin", `tensor "t"`, "not contiguous")
	_, err = Open(filepath.Join(td, "badglobal.bin"))
	wantErr(t, err, "badglobal.bin", "global collections.Counter is not allowed")
	_, err = Open(filepath.Join(td, "legacy.bin"))
	wantErr(t, err, "legacy.bin", "legacy (pre-1.6, non-zip)")
	_, err = Parse("x.bin", []byte("hello"))
	wantErr(t, err, "x.bin", "not a torch.save zip")
	_, err = Open(filepath.Join(td, "missing.bin"))
	wantErr(t, err, "missing.bin")

	// Truncations of a valid file: an error naming the file, never a panic.
	b := read(t, "views.bin")
	for n := 0; n < len(b); n++ {
		_, err := Parse("cut.bin", b[:n])
		wantErr(t, err, "cut.bin")
	}
}

// entry is one file of a checkpoint archive, uncompressed.
type entry struct {
	name string
	data []byte
}

// viewsEntries reads views.bin's archive entries in their order.
func viewsEntries(t testing.TB) []entry {
	t.Helper()
	src := read(t, "views.bin")
	zr, err := zip.NewReader(bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	var es []entry
	for _, e := range zr.File {
		r, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		d, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, entry{e.Name, d})
	}
	return es
}

// rezip rewrites views.bin, letting edit drop or change entries.
func rezip(t *testing.T, edit func(name string, data []byte) (string, []byte, uint16)) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, e := range viewsEntries(t) {
		name, data, method := edit(e.name, e.data)
		if name == "" {
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	return out.Bytes()
}

func TestBadArchives(t *testing.T) {
	// Rewritten unchanged by archive/zip: still reads.
	same := rezip(t, func(n string, d []byte) (string, []byte, uint16) { return n, d, zip.Store })
	if _, err := Parse("same.bin", same); err != nil {
		t.Fatal(err)
	}
	missing := rezip(t, func(n string, d []byte) (string, []byte, uint16) {
		if n == "views/data/1" {
			return "", nil, 0
		}
		return n, d, zip.Store
	})
	_, err := Parse("missing.bin", missing)
	wantErr(t, err, "missing.bin", `tensor "ids"`, "storage entry data/1 is missing")

	compressed := rezip(t, func(n string, d []byte) (string, []byte, uint16) { return n, d, zip.Deflate })
	_, err = Parse("deflated.bin", compressed)
	wantErr(t, err, "deflated.bin", "compressed")

	short := rezip(t, func(n string, d []byte) (string, []byte, uint16) {
		if n == "views/data/0" {
			d = d[:40]
		}
		return n, d, zip.Store
	})
	_, err = Parse("short.bin", short)
	wantErr(t, err, "short.bin", "storage data/0 holds 40 bytes")

	withOrder := func(order string) []byte {
		b := rezip(t, func(n string, d []byte) (string, []byte, uint16) { return n, d, zip.Store })
		zr, _ := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		var out bytes.Buffer
		zw := zip.NewWriter(&out)
		for _, e := range zr.File {
			if err := zw.Copy(e); err != nil {
				t.Fatal(err)
			}
		}
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: "views/byteorder", Method: zip.Store})
		w.Write([]byte(order))
		zw.Close()
		return out.Bytes()
	}
	if _, err := Parse("le.bin", withOrder("little")); err != nil {
		t.Fatal(err)
	}
	_, err = Parse("be.bin", withOrder("big"))
	wantErr(t, err, "be.bin", `byteorder "big"`)

	nopkl := rezip(t, func(n string, d []byte) (string, []byte, uint16) {
		if strings.HasSuffix(n, "data.pkl") {
			return "", nil, 0
		}
		return n, d, zip.Store
	})
	_, err = Parse("nopkl.bin", nopkl)
	wantErr(t, err, "nopkl.bin", "no <prefix>/data.pkl")
}

// pickleZip wraps a hand-written pickle in a checkpoint archive.
func pickleZip(t testing.TB, pkl []byte, storages map[string][]byte) []byte {
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	add := func(n string, d []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "archive/" + n, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(d)
	}
	add("data.pkl", pkl)
	for k, v := range storages {
		add("data/"+k, v)
	}
	add("version", []byte("3\n"))
	zw.Close()
	return out.Bytes()
}

func TestPickleRefusals(t *testing.T) {
	for _, c := range []struct {
		name, pkl string
		want      []string
	}{
		{"os.system", "\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.", []string{"global os.system is not allowed"}},
		{"builtins.eval via STACK_GLOBAL", "\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.", []string{"global builtins.eval is not allowed"}},
		{"INST", "\x80\x02(ios\nsystem\n.", []string{"opcode INST"}},
		{"NEWOBJ", "\x80\x02ccollections\nOrderedDict\n)\x81.", []string{"opcode NEWOBJ"}},
		{"no STOP", "\x80\x02}", []string{"without STOP"}},
		{"underflow", "\x80\x02s.", []string{"underflow"}},
		{"memo", "\x80\x02h\x05.", []string{"memo entry 5"}},
		{"not a dict", "\x80\x02]q\x00.", []string{"holds a list, not a state dict"}},
		{"value not tensor", "\x80\x02}(X\x01\x00\x00\x00aK\x01u.", []string{`entry "a" is a int, not a tensor`}},
		{"protocol", "\x80\x09.", []string{"protocol 9"}},
		{"huge string", "\x80\x02X\xff\xff\xff\xff.", []string{"runs past"}},
		{"huge long", "\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", []string{"LONG1"}},
		{"REDUCE storage type", "\x80\x02ctorch\nFloatStorage\n)R.", []string{"REDUCE may not call torch.FloatStorage"}},
		{"BUILD on list", "\x80\x02]}b.", []string{"BUILD on a list"}},
		{"bad persid", "\x80\x02X\x01\x00\x00\x00xQ.", []string{"persistent id is a str"}},
	} {
		_, err := Parse("p.bin", pickleZip(t, []byte(c.pkl), nil))
		if err == nil {
			t.Fatalf("%s: no error", c.name)
		}
		for _, w := range append(c.want, "p.bin") {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}

// A hand-written protocol-4 pickle (FRAME, MEMOIZE, SHORT_BINUNICODE,
// STACK_GLOBAL, LONG1, 7-argument _rebuild_tensor_v2) reads.
func TestProtocol4(t *testing.T) {
	sg := func(mod, name string) string {
		return "\x8c" + string(rune(len(mod))) + mod + "\x94\x8c" + string(rune(len(name))) + name + "\x94\x93\x94"
	}
	pkl := "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" + "}\x94(" + "\x8c\x01w\x94" +
		sg("torch._utils", "_rebuild_tensor_v2") + "(" +
		"(\x8c\x07storage\x94" + sg("torch", "BFloat16Storage") + "\x8c\x010\x94\x8c\x03cpu\x94\x8a\x01\x03t\x94Q" +
		"K\x01K\x02\x85\x94K\x01\x85\x94\x89" + sg("collections", "OrderedDict") + ")R\x94N" + "t\x94R\x94u."
	st := []byte{0x80, 0x3f, 0x00, 0x40, 0x40, 0x40} // bf16 1, 2, 3
	f, err := Parse("p4.bin", pickleZip(t, []byte(pkl), map[string][]byte{"0": st}))
	if err != nil {
		t.Fatal(err)
	}
	v, ti, err := f.Float32("w")
	if err != nil || !slices.Equal(ti.Shape, []int64{2}) || v[0] != 2 || v[1] != 3 {
		t.Fatalf("w = %v %v %v", v, ti, err)
	}
	// The same storage declared with more elements than its entry holds.
	bad := strings.Replace(pkl, "\x8a\x01\x03", "\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40", 1)
	_, err = Parse("p4big.bin", pickleZip(t, []byte(bad), map[string][]byte{"0": st}))
	wantErr(t, err, "p4big.bin", "storage data/0 holds 6 bytes")
	// An offset past the storage.
	bad = strings.Replace(pkl, "QK\x01", "QK\x02", 1)
	_, err = Parse("p4off.bin", pickleZip(t, []byte(bad), map[string][]byte{"0": st}))
	wantErr(t, err, "p4off.bin", "run past its storage")
}

func FuzzTorchBin(f *testing.F) {
	for _, n := range []string{"views.bin", "param.bin", "noncontig.bin", "badglobal.bin"} {
		b, err := os.ReadFile(filepath.Join(td, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		for _, ti := range file.Tensors {
			raw, _, err := file.Bytes(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(raw)) != ti.NumElements()*ti.DType.Size() {
				t.Fatalf("%s: %d bytes for %v of %s", ti.Name, len(raw), ti.Shape, ti.DType)
			}
			switch ti.DType {
			case "F32", "F16", "BF16":
				v, _, err := file.Float32(ti.Name)
				if err != nil || int64(len(v)) != ti.NumElements() {
					t.Fatalf("%s: %d values, %v", ti.Name, len(v), err)
				}
			}
		}
	})
}

// FuzzUnpickle fuzzes the pickle alone, wrapped in a valid archive (a
// mutated data.pkl inside a zip fails its CRC before it reaches the
// unpickler, which FuzzTorchBin therefore seldom exercises).
func FuzzUnpickle(f *testing.F) {
	storages := map[string][]byte{}
	for _, e := range viewsEntries(f) {
		if strings.HasSuffix(e.name, "data.pkl") {
			f.Add(e.data)
		} else if k, ok := strings.CutPrefix(e.name, "views/data/"); ok {
			storages[k] = e.data
		}
	}
	f.Add([]byte("\x80\x02}q\x00."))
	f.Fuzz(func(t *testing.T, pkl []byte) {
		file, err := Parse("fuzz", pickleZip(t, pkl, storages))
		if err != nil {
			return
		}
		for _, ti := range file.Tensors {
			raw, _, err := file.Bytes(ti.Name)
			if err != nil || int64(len(raw)) != ti.NumElements()*ti.DType.Size() {
				t.Fatalf("%s: %d bytes for %v of %s (%v)", ti.Name, len(raw), ti.Shape, ti.DType, err)
			}
		}
	})
}

// The layout torch 2.x writes: folder "archive", storages aligned to 64
// bytes by an "FB" extra field, .data/serialization_id, .format_version,
// .storage_alignment and byteorder entries.
func TestTorch2Layout(t *testing.T) {
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	add := func(name string, d []byte) {
		// Local header: 30 bytes + name + extra (4-byte extra header + padding).
		zw.Flush()
		pos := out.Len() + 30 + len(name) + 4
		pad := (64 - pos%64) % 64
		extra := append([]byte{'F', 'B', byte(pad), 0}, make([]byte, pad)...)
		w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Store, Extra: extra,
			CRC32: crc32.ChecksumIEEE(d), CompressedSize64: uint64(len(d)), UncompressedSize64: uint64(len(d))})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(d)
	}
	for _, e := range viewsEntries(t) {
		add("archive/"+strings.TrimPrefix(e.name, "views/"), e.data)
	}
	add("archive/byteorder", []byte("little"))
	add("archive/.data/serialization_id", []byte("0123456789"))
	add("archive/.format_version", []byte("1"))
	add("archive/.storage_alignment", []byte("64"))
	zw.Close()
	z2, _ := zip.NewReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
	for _, e := range z2.File {
		if off, _ := e.DataOffset(); off%64 != 0 {
			t.Fatalf("%s at %d, not 64-byte aligned", e.Name, off)
		}
	}
	f, err := Parse("t2.bin", out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := f.Float32("mid")
	if err != nil || len(v) != 4 || v[0] != 2 || v[3] != 5 {
		t.Fatalf("mid = %v, %v", v, err)
	}
}

// A data.pkl whose header claims more than MaxPickleSize is refused before
// anything is read or allocated.
func TestPickleSizeLimit(t *testing.T) {
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store,
		CompressedSize64: 5, UncompressedSize64: MaxPickleSize + 1})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("\x80\x02}q."))
	zw.Close()
	_, err = Parse("huge.bin", out.Bytes())
	wantErr(t, err, "huge.bin", "over the")
}
