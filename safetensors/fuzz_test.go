package safetensors

import (
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(build(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(build(`{"a":{"dtype":"F16","shape":[],"data_offsets":[0,2]}}`, make([]byte, 2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader("fuzz", b, int64(len(b)))
		if err != nil {
			return
		}
		// Accepted headers must describe in-range, correctly sized tensors.
		dataLen := int64(len(b)) - h.DataStart
		total := int64(0)
		for _, ti := range h.Tensors {
			if ti.Begin < 0 || ti.End > dataLen || ti.End-ti.Begin != ti.NumElements()*ti.DType.Size() {
				t.Fatalf("bad tensor accepted: %+v", ti)
			}
			total += ti.End - ti.Begin
			if ti.DType == F32 || ti.DType == F16 || ti.DType == BF16 {
				if _, err := ToFloat32(b[h.DataStart+ti.Begin:h.DataStart+ti.End], ti.DType); err != nil {
					t.Fatal(err)
				}
			}
		}
		if total != dataLen {
			t.Fatalf("tensors cover %d of %d bytes", total, dataLen)
		}
	})
}
