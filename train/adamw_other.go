//go:build !amd64 || purego

package train

const hasAdamWAsm = false

func adamwAsm(w, g, m, v *float32, n int, c *adamwConsts) bool { panic("unreachable") }
