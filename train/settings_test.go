package train

import (
	"encoding/json"
	"strings"
	"testing"
)

// A refused resume names each differing setting; a larger budget extends a
// constant-schedule run and is refused, with what to do, for a cosine one.
func TestCompareSettings(t *testing.T) {
	mk := func(steps int, lr float64, schedule string) json.RawMessage {
		b, _ := json.Marshal(runSettings{Model: "m", Data: "d", SeqLen: 8, Batch: 2, Steps: steps, LR: lr, Schedule: schedule, Optimizer: "adamw"})
		return b
	}
	cases := []struct {
		was, now json.RawMessage
		step     int
		want     []string // nil: accepted
	}{
		{mk(4, 1e-4, "cosine"), mk(4, 1e-4, "cosine"), 4, nil},
		{mk(4, 1e-4, "constant"), mk(4, 0.005, "constant"), 2, []string{"lr 0.0001 vs 0.005"}},
		{mk(4, 1e-4, "constant"), mk(8, 0.005, "cosine"), 2, []string{"lr 0.0001 vs 0.005", "schedule \"constant\" vs \"cosine\"", "steps 4 vs 8"}},
		{mk(4, 1e-4, "constant"), mk(8, 1e-4, "constant"), 4, nil},
		{mk(4, 1e-4, "cosine"), mk(8, 1e-4, "cosine"), 4, []string{"steps 4 vs 8", "cosine", "--model OUT --out NEW_OUT"}},
		{mk(4, 1e-4, "constant"), mk(3, 1e-4, "constant"), 4, []string{"step 4", "3 steps"}},
	}
	for i, c := range cases {
		err := CompareSettings(c.was, c.now, c.step)
		if c.want == nil {
			if err != nil {
				t.Errorf("case %d: %v", i, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("case %d: accepted", i)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("case %d: %q lacks %q", i, err, w)
			}
		}
		if strings.Contains(err.Error(), "{") {
			t.Errorf("case %d: JSON in the message: %v", i, err)
		}
	}
}
