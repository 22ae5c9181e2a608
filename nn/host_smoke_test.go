package nn

import (
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
)

// A first check that the host device runs and reports bad operands.
func TestHostSmoke(t *testing.T) {
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	d := DeviceFor(be)
	a, _ := d.Resident([]float32{1, 2, 3, 4})
	c, _ := d.Alloc(4)
	d.MatNT(c, a, a, 2, 2, 2, false)
	got := make([]float32, 4)
	if err := d.Download(got, c); err != nil {
		t.Fatal(err)
	}
	if got[0] != 5 || got[1] != 11 || got[3] != 25 {
		t.Fatalf("MatNT %v", got)
	}
	d.MatNT(c, a, a, 3, 3, 3, false)
	if err := d.Sync(); err == nil {
		t.Fatal("no error for a too-small operand")
	} else {
		t.Log(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal("error not cleared")
	}
}
