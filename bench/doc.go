// Package bench holds the kernel benchmarks (see kernels_test.go):
//
//	go test -run x -bench . -benchtime 2x ./bench/
package bench
