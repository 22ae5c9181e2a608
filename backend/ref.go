package backend

// CheckDims panics with a clear message when the slices are too short for the
// given shapes; kernels call it so that a shape bug fails loudly at the call
// site instead of corrupting memory in assembly.
func CheckDims(op string, c, a, b []float32, lc, la, lb int) {
	if len(c) < lc || len(a) < la || len(b) < lb {
		panic(op + ": slice too short for the given dimensions")
	}
}
