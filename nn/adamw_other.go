//go:build !amd64 || purego

package nn

import "github.com/darwinlm/darwinlm-go/backend"

const hasAdamWAsm = false

func adamwAsm(w, g, m, v *float32, n int, c *backend.AdamWStep) bool { panic("unreachable") }
