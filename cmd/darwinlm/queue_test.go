package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad input to queue, worker and search --queue: clear errors, fast.
func TestQueueBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"worker"}, "--queue is required"},
		{[]string{"worker", "--queue", "nats://127.0.0.1:9"}, "cannot reach the queue server"},
		{[]string{"worker", "--queue", "127.0.0.1:9"}, "want nats://HOST:PORT"},
		{[]string{"queue", "--listen", "127.0.0.1:0"}, "--store is required"},
		{[]string{"queue", "--listen", "nowhere", "--store", dir}, "--listen"},
		{[]string{"search", "--model", "x", "--database", "y", "--calib", "z", "--log", filepath.Join(dir, "log"),
			"--out", filepath.Join(dir, "o.txt"), "--queue", "nats://127.0.0.1:9"}, "cannot reach the queue server"},
	} {
		t0 := time.Now()
		_, err := run(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.want)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("%v: took %s", c.args, d)
		}
	}
}
