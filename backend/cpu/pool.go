package cpu

import (
	"sync"
	"sync/atomic"
)

// A persistent pool of worker goroutines: GEMMs are called many times per
// forward pass, so spawning goroutines per call (or per tile) would cost more
// than small products take. Tasks never wait on other tasks, so nothing can
// deadlock; a caller waiting for its parts runs queued tasks meanwhile (its
// own or other callers'), which keeps the cores busy when many goroutines
// call the backend at once. Which goroutine runs a part never changes the
// result.
var pool struct {
	mu sync.Mutex
	n  int
	ch chan func()
}

func ensureWorkers(n int) chan func() {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.ch == nil {
		pool.ch = make(chan func(), 256)
	}
	for ; pool.n < n; pool.n++ {
		go func(ch chan func()) {
			for f := range ch {
				f()
			}
		}(pool.ch)
	}
	return pool.ch
}

// parallel runs f(0..parts-1), part 0 on the calling goroutine.
func parallel(parts int, f func(t int)) {
	if parts <= 1 {
		f(0)
		return
	}
	ch := ensureWorkers(parts - 1)
	left := int32(parts - 1)
	done := make(chan struct{})
	for t := 1; t < parts; t++ {
		ch <- func() {
			f(t)
			if atomic.AddInt32(&left, -1) == 0 {
				close(done)
			}
		}
	}
	f(0)
	for {
		select {
		case <-done:
			return
		case task := <-ch:
			task()
		}
	}
}
