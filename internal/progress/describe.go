package progress

// Describe replaces the bar's description (e.g. to show the best result so
// far while the bar runs).
func (p *Bar) Describe(desc string) {
	if p != nil && p.b != nil {
		p.b.Describe(desc)
	}
}
