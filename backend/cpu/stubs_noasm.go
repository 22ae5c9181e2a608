//go:build !amd64 || purego

package cpu

// Without assembly only the pure-Go kernels (kern_generic.go) are registered.
