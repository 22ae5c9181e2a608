// Package dist spreads the candidate evaluations of a search over many
// machines through NATS JetStream: a work-queue stream of tasks, a stream of
// results, an object store of inputs keyed by content hash, and a key-value
// bucket where workers announce themselves. The search (package evolve)
// stays the single source of truth: it calls dist through its Remote seam
// and logs every row as a local search does; dist only moves tasks and
// results.
//
// Subjects and buckets:
//
//	darwinlm.task.candidate       tasks (stream DARWINLM_TASKS, work queue;
//	                              one durable pull consumer "workers")
//	darwinlm.result.RUN.KEY       results (stream DARWINLM_RESULTS), KEY =
//	                              GEN.STAGE.CAND (gen −1 written m1)
//	DARWINLM_INPUTS               object store: inputs named by SHA-256
//	DARWINLM_WORKERS              key-value: one entry per live worker
//	DARWINLM_META                 key-value: "version" of the queue
package dist

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/darwinlm/darwinlm-go/evolve"
)

// Version is the task and result protocol together with the computation
// contract: a worker computes exactly what a local search computes only when
// coordinator and worker run the same code, so a worker whose version
// differs from the queue's is refused. Bump it with any change of message
// layout or of the numerics of evaluation.
var Version = "darwinlm-dist/1"

func init() {
	// Testing: pretend to be another build (the refusal test).
	if v := os.Getenv("DARWINLM_DIST_VERSION"); v != "" {
		Version = v
	}
}

const (
	TaskStream    = "DARWINLM_TASKS"
	ResultStream  = "DARWINLM_RESULTS"
	TaskSubject   = "darwinlm.task.candidate"
	resultPrefix  = "darwinlm.result."
	WorkerGroup   = "workers"
	InputsBucket  = "DARWINLM_INPUTS"
	WorkersBucket = "DARWINLM_WORKERS"
	MetaBucket    = "DARWINLM_META"
)

// Job names the inputs of a search's evaluations (the object-store names
// of each, a SHA-256): a worker builds one evolve.ModelEvaluator per job.
type Job struct {
	Version  string `json:"version"`
	Model    string `json:"model"`    // tar of the dense model's Hugging Face folder (model.SaveHF)
	Database string `json:"database"` // tar of the pruning database folder
	Pools    string `json:"pools"`    // JSON {fit, train}
	Cache    string `json:"cache"`    // evolve.DenseCache.WriteTo; "" for ppl
	Fitness  string `json:"fitness"`
	// Train is train.Options as JSON (exact: Go's shortest float format
	// round-trips).
	Train []byte `json:"train"`
}

// Task is one candidate evaluation (stitch, fine-tune, score).
type Task struct {
	Version    string        `json:"version"`
	RunID      string        `json:"run_id"`
	Generation int           `json:"generation"`
	Stage      int           `json:"stage"`
	Candidate  int64         `json:"candidate"`
	Job        string        `json:"job"` // object name of the Job
	Levels     []int         `json:"levels"`
	Batch      *evolve.Batch `json:"batch"`
	Before     bool          `json:"before"`
	// Kind is "" for a candidate evaluation, "obs" for a database module.
	Kind string   `json:"kind,omitempty"`
	OBS  *OBSWork `json:"obs,omitempty"`
	// Digest hashes everything above but the version: a result answers
	// this exact question.
	Digest string `json:"digest"`
}

// Result is a worker's answer to a Task. Floats travel as IEEE bits so
// NaN, ±Inf and every last bit survive.
type Result struct {
	Version    string  `json:"version"`
	RunID      string  `json:"run_id"`
	Generation int     `json:"generation"`
	Stage      int     `json:"stage"`
	Candidate  int64   `json:"candidate"`
	Digest     string  `json:"digest"`
	Fitness    uint64  `json:"fitness_bits"`
	Before     uint64  `json:"before_bits"`
	Params     int64   `json:"params"`
	Object     string  `json:"object,omitempty"` // obs: object name of the gob of the prune.OBSResult
	Error      string  `json:"error,omitempty"`  // the evaluation failed: the coordinator stops with it
	Worker     string  `json:"worker"`
	Backend    string  `json:"backend"`
	Delivered  uint64  `json:"delivered"` // JetStream delivery count of the task (> 1: redelivered)
	Seconds    float64 `json:"seconds"`
}

// Score returns the result's score.
func (r *Result) Score() evolve.Score {
	return evolve.Score{Fitness: math.Float64frombits(r.Fitness), Before: math.Float64frombits(r.Before), Params: r.Params}
}

// Announce is what a worker puts in the workers bucket.
type Announce struct {
	Worker  string `json:"worker"`
	Version string `json:"version"`
	Backend string `json:"backend"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
}

// key is the task's name in result subjects and message ids.
func (t *Task) key() string {
	if t.Kind == kindOBS {
		return "obs." + t.OBS.Module
	}
	g := fmt.Sprint(t.Generation)
	if t.Generation < 0 {
		g = "m" + fmt.Sprint(-t.Generation)
	}
	return fmt.Sprintf("%s.%d.%d", g, t.Stage, t.Candidate)
}

func resultSubject(run, key string) string { return resultPrefix + run + "." + key }

// digest fills t.Digest.
func (t *Task) digest() string {
	var b strings.Builder
	if t.Kind == kindOBS {
		o := t.OBS
		fmt.Fprintf(&b, "obs|%s|%s|%s|%s|%d|%d|%d|%v|%v", t.RunID, o.Module, o.W, o.H, o.Rows, o.Cols, o.Opts.Group, o.Opts.Schedule, o.Opts.RelDamp)
		h := sha256.Sum256([]byte(b.String()))
		return hex.EncodeToString(h[:16])
	}
	fmt.Fprintf(&b, "%s|%d|%d|%d|%s|%v|%v|%v|%v|%d|%d", t.RunID, t.Generation, t.Stage, t.Candidate, t.Job, t.Levels,
		t.Batch.Train, t.Batch.Fit, t.Before, t.Batch.TrainTokens, t.Batch.FitTokens)
	h := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(h[:16])
}

// checkSubjectToken refuses run ids that cannot be a subject token.
func checkSubjectToken(s string) error {
	if s == "" || strings.ContainsAny(s, ". *>\t\r\n") {
		return fmt.Errorf("run id %q cannot name a NATS subject (no dots, spaces, * or >)", s)
	}
	return nil
}
