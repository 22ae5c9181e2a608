// Package progress draws progress bars on stderr when, and only when, stderr
// is a terminal and the user did not ask for quiet output. Everything else in
// the project calls it unconditionally.
package progress

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Quiet disables every bar (set from --quiet).
var Quiet bool

// Bar is a progress bar that may be a no-op.
type Bar struct{ b *progressbar.ProgressBar }

// New starts a bar of total steps with a description. It draws nothing when
// stderr is not a terminal or Quiet is set.
func New(total int64, desc string) *Bar {
	if Quiet || !term.IsTerminal(int(os.Stderr.Fd())) {
		return &Bar{}
	}
	return &Bar{b: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)}
}

// Add advances the bar.
func (p *Bar) Add(n int) {
	if p != nil && p.b != nil {
		_ = p.b.Add(n)
	}
}

// Finish clears the bar.
func (p *Bar) Finish() {
	if p != nil && p.b != nil {
		_ = p.b.Finish()
	}
}

// Set moves the bar to n steps done.
func (p *Bar) Set(n int) {
	if p != nil && p.b != nil {
		_ = p.b.Set(n)
	}
}
