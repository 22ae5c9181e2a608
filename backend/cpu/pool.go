package cpu

import "sync"

// A persistent pool of worker goroutines: GEMMs are called many times per
// forward pass, so spawning goroutines per call (or per tile) would cost more
// than small products take. Workers never submit work themselves, so
// concurrent callers cannot deadlock.
var pool struct {
	mu sync.Mutex
	n  int
	ch chan func()
}

func ensureWorkers(n int) {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.ch == nil {
		pool.ch = make(chan func(), 64)
	}
	for ; pool.n < n; pool.n++ {
		go func(ch chan func()) {
			for f := range ch {
				f()
			}
		}(pool.ch)
	}
}

// parallel runs f(0..parts-1), part 0 on the calling goroutine.
func parallel(parts int, f func(t int)) {
	if parts <= 1 {
		f(0)
		return
	}
	ensureWorkers(parts - 1)
	var wg sync.WaitGroup
	wg.Add(parts - 1)
	for t := 1; t < parts; t++ {
		pool.ch <- func() {
			defer wg.Done()
			f(t)
		}
	}
	f(0)
	wg.Wait()
}
