package backend_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
)

// TestOpenDevices checks --device routing and the auto fallback with its
// note, using a fake device backend that has no GPU.
func TestOpenDevices(t *testing.T) {
	var gotDev []int
	backend.RegisterDevice("fakegpu", func(dev int) (backend.Backend, error) {
		gotDev = append(gotDev, dev)
		if dev == 3 {
			return backend.Get("purego")
		}
		return nil, errors.New("fakegpu: no GPU")
	}, true)
	var notes bytes.Buffer
	old := backend.Notes
	backend.Notes = &notes
	defer func() { backend.Notes = old }()

	cpuBe, err := backend.Get("cpu")
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.Open("auto", -1)
	if err != nil || be.Name() != cpuBe.Name() { // "purego" under -tags purego
		t.Fatalf("auto: %v %v", be, err)
	}
	if !strings.Contains(notes.String(), "fakegpu: no GPU; using cpu") {
		t.Errorf("auto fallback note: %q", notes.String())
	}
	if be, err := backend.Open("fakegpu", 3); err != nil || be.Name() != "purego" {
		t.Errorf("--device 3: %v %v", be, err)
	}
	if _, err := backend.Open("fakegpu", -1); err == nil {
		t.Error("fakegpu without a GPU: no error")
	}
	if len(gotDev) != 3 || gotDev[0] != -1 || gotDev[1] != 3 {
		t.Errorf("device indices passed: %v", gotDev)
	}
	if _, err := backend.Open("cpu", 0); err == nil || !strings.Contains(err.Error(), "no devices") {
		t.Errorf("cpu --device 0: %v", err)
	}
	if _, err := backend.Open("auto", 1); err == nil {
		t.Error("auto --device 1: no error")
	}
	if _, err := backend.Open("nope", -1); err == nil || !strings.Contains(err.Error(), "fakegpu") {
		t.Errorf("unknown backend: %v", err)
	}
	// The device in the name ("fakegpu:3"), as the search's settings hold it.
	if be, err := backend.Get("fakegpu:3"); err != nil || be.Name() != "purego" {
		t.Errorf("fakegpu:3: %v %v", be, err)
	}
	if gotDev[len(gotDev)-1] != 3 {
		t.Errorf("fakegpu:3 passed device %d", gotDev[len(gotDev)-1])
	}
	for _, bad := range []string{"fakegpu:x", "fakegpu:-1", "cpu:0"} {
		if _, err := backend.Get(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if _, err := backend.Open("fakegpu:3", 2); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Errorf("fakegpu:3 with --device 2: %v", err)
	}
}
