package experiment

// SEAM(prune, evolve, shear): these kinds are wired when their branches
// land; until then they (and every row that needs them) are "not run".
func init() {
	for kind, branch := range map[string]string{"search": "evolve"} {
		stageFuncs[kind] = func(*Env) error {
			return &ErrNotAvailable{Reason: kind + " needs package " + branch + ", not in this build yet (branch " + branch + " not merged)"}
		}
	}
}
