//go:build !unix

package evolve

func processCPU() float64 { return 0 }
