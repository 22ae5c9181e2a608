package dist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
)

// Database layers through the queue: the coordinator (darwinlm database
// --queue) runs the dense forward passes and accumulates each layer's
// Hessians itself (every layer needs the previous one's outputs), then
// hands each module's greedy OBS pass, the expensive part, to a worker:
// weight and Hessian go to the object store, the compensated level weights
// come back the same way.

const kindOBS = "obs"

// OBSWork is the payload of an OBS task: object names of the weight
// (float32 little endian) and the Hessian (float64 little endian).
type OBSWork struct {
	Module string           `json:"module"`
	W      string           `json:"w"`
	H      string           `json:"h"`
	Rows   int              `json:"rows"`
	Cols   int              `json:"cols"`
	Opts   prune.OBSOptions `json:"opts"`
}

// DatabaseRunID names a database build in subjects: the same model,
// calibration and options give the same id, so a rerun after a crash finds
// the results already computed.
func DatabaseRunID(dense *model.Model, calib [][]int, o prune.BuildOptions) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%v|%v|%v|%v|%v|%d|", prune.ModelHash(dense), o.Levels, o.NeuronMultiple, o.AttnRemoved, o.MLPRemoved, o.RelDamp, o.NoDamp, o.BatchTokens)
	for _, s := range calib {
		binary.Write(h, binary.LittleEndian, int64(len(s)))
		for _, t := range s {
			binary.Write(h, binary.LittleEndian, int32(t))
		}
	}
	return "db-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// NewOBSCoordinator connects to the queue for the database build run
// (DatabaseRunID); its SubmitOBS is a prune.OBSExecutor. logDir, if not
// empty, receives tasks.parquet.
func NewOBSCoordinator(ctx context.Context, url, run, logDir string) (*Coordinator, error) {
	if err := checkSubjectToken(run); err != nil {
		return nil, err
	}
	c, err := Connect(ctx, url, "darwinlm-database-coordinator", 0)
	if err != nil {
		return nil, err
	}
	if err := c.checkVersion(ctx, "coordinator"); err != nil {
		c.Close()
		return nil, err
	}
	co := &Coordinator{c: c, run: run, logDir: logDir, results: map[string][]*Result{}, notify: map[string]chan struct{}{},
		logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "dist: "+f+"\n", a...) }}
	if err := co.listen(ctx); err != nil {
		c.Close()
		return nil, err
	}
	co.announced(ctx)
	go func() { <-ctx.Done(); c.Close() }()
	return co, nil
}

// SubmitOBS uploads the module's weight and Hessian, publishes the task
// (unless its result is in from an earlier run) and returns the wait.
func (co *Coordinator) SubmitOBS(ctx context.Context, t prune.OBSTask) (func() (*prune.OBSResult, error), error) {
	if strings.ContainsAny(t.Module, " *>") {
		return nil, fmt.Errorf("module name %q cannot be a subject", t.Module)
	}
	w, err := co.c.putBytes(ctx, f32le(t.W))
	if err != nil {
		return nil, fmt.Errorf("weight upload: %w", err)
	}
	h, err := co.c.putBytes(ctx, f64le(t.H))
	if err != nil {
		return nil, fmt.Errorf("Hessian upload: %w", err)
	}
	task := &Task{Version: Version, RunID: co.run, Generation: -1, Kind: kindOBS, OBS: &OBSWork{Module: t.Module, W: w, H: h, Rows: t.Rows, Cols: t.Cols, Opts: t.Opts}}
	task.Digest = task.digest()
	res := make(chan struct{})
	var out *prune.OBSResult
	var oerr error
	go func() {
		defer close(res)
		r, err := co.await(ctx, task)
		if err != nil {
			oerr = fmt.Errorf("%s: %w", t.Module, err)
			return
		}
		b, err := co.c.Inputs.GetBytes(ctx, r.Object)
		if err != nil {
			oerr = fmt.Errorf("%s: result %s: %w", t.Module, short(r.Object), err)
			return
		}
		out = new(prune.OBSResult)
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(out); err != nil {
			oerr = fmt.Errorf("%s: result %s: %w", t.Module, short(r.Object), err)
		}
	}()
	return func() (*prune.OBSResult, error) { <-res; return out, oerr }, nil
}

// runOBS is the worker's side of an OBS task.
func (w *worker) runOBS(ctx context.Context, t *Task) (string, error) {
	o := t.OBS
	wb, err := w.c.Inputs.GetBytes(ctx, o.W)
	if err != nil {
		return "", fmt.Errorf("%s: weight %s: %w", o.Module, short(o.W), missing(err))
	}
	hb, err := w.c.Inputs.GetBytes(ctx, o.H)
	if err != nil {
		return "", fmt.Errorf("%s: Hessian %s: %w", o.Module, short(o.H), missing(err))
	}
	res, err := prune.GreedyOBS(f32from(wb), o.Rows, o.Cols, f64from(hb), o.Opts)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(res); err != nil {
		return "", err
	}
	return w.c.putBytes(ctx, buf.Bytes())
}

func f32le(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func f64le(x []float64) []byte {
	b := make([]byte, 8*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return b
}

func f32from(b []byte) []float32 {
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x
}

func f64from(b []byte) []float64 {
	x := make([]float64, len(b)/8)
	for i := range x {
		x[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return x
}

// missing names an input absent from the object store.
func missing(err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("missing from the object store %s (the coordinator uploads it; was the queue's store wiped?)", InputsBucket)
	}
	return err
}
