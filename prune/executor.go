package prune

import "context"

// The seam through which package dist runs Build's OBS passes on other
// machines without prune importing it (BuildOptions.OBS).

// OBSTask is one module's greedy OBS problem: GreedyOBS(W, Rows, Cols, H,
// Opts) is what must be computed, exactly.
type OBSTask struct {
	Module     string // e.g. model.layers.3.mlp.down_proj
	W          []float32
	Rows, Cols int
	H          []float64
	Opts       OBSOptions
}

// OBSExecutor runs OBS tasks. SubmitOBS must not keep t's slices after it
// returns (Build reuses nothing, but the Hessian is large: upload it and
// let it go); wait blocks until the result is in.
type OBSExecutor interface {
	SubmitOBS(ctx context.Context, t OBSTask) (wait func() (*OBSResult, error), err error)
}
