package dist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

// WorkerOptions configure a worker.
type WorkerOptions struct {
	URL     string
	Backend string // compute backend name ("" = auto)
	Cache   string // folder for inputs fetched from the object store
	ID      string // "" = HOST-PID
	// MaxTasks stops the worker after this many tasks (0 = never; tests).
	MaxTasks int
	// Delay sleeps before each evaluation (tests: a task to kill a worker in).
	Delay time.Duration
	Logf  func(format string, args ...any)
}

// worker holds one evaluator, for the job it last served.
type worker struct {
	o   WorkerOptions
	c   *Conn
	be  backend.Backend
	job string
	ev  *evolve.ModelEvaluator
}

// RunWorker pulls tasks until ctx ends: for each, it builds the job's
// evaluator (inputs fetched once and cached on disk), evaluates, publishes
// the result and only then acknowledges the task, telling JetStream it is
// alive every third of the ack deadline meanwhile. A task of another
// version is handed back and the worker stops with an error.
func RunWorker(ctx context.Context, o WorkerOptions) error {
	be, err := backend.Get(o.Backend)
	if err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	if o.Cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("--cache: %w", err)
		}
		o.Cache = filepath.Join(d, "darwinlm", "dist")
	}
	host, _ := os.Hostname()
	if o.ID == "" {
		o.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.Logf == nil {
		o.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "worker "+o.ID+": "+f+"\n", a...) }
	}
	c, err := Connect(ctx, o.URL, "darwinlm-worker "+o.ID, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.checkVersion(ctx, "worker"); err != nil {
		return err
	}
	ann, _ := json.Marshal(Announce{Worker: o.ID, Version: Version, Backend: be.Name(), Host: host, PID: os.Getpid()})
	announce := func() {
		if _, err := c.Workers.Put(context.Background(), o.ID, ann); err != nil {
			o.Logf("announce: %v", err)
		}
	}
	announce()
	defer c.Workers.Delete(context.Background(), o.ID)
	// Re-announce within the bucket's one-minute TTL, also during long tasks.
	actx, astop := context.WithCancel(ctx)
	defer astop()
	go func() {
		tk := time.NewTicker(20 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-actx.Done():
				return
			case <-tk.C:
				announce()
			}
		}
	}()
	aw, err := c.ackWait(ctx)
	if err != nil {
		return fmt.Errorf("worker consumer: %w", err)
	}
	cons, err := c.Tasks.Consumer(ctx, WorkerGroup)
	if err != nil {
		return fmt.Errorf("worker consumer: %w", err)
	}
	o.Logf("ready: version %s, backend %s, queue %s, ack deadline %s", Version, be.Name(), o.URL, aw)
	w := &worker{o: o, c: c, be: be}
	done := 0
	for ctx.Err() == nil {
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			o.Logf("fetch: %v", err)
			time.Sleep(time.Second)
			continue
		}
		if err := w.handle(ctx, msg, aw); err != nil {
			return err
		}
		done++
		if o.MaxTasks > 0 && done >= o.MaxTasks {
			return nil
		}
	}
	return nil
}

// handle serves one task; an error stops the worker (the task is handed
// back first).
func (w *worker) handle(ctx context.Context, msg jetstream.Msg, aw time.Duration) error {
	var t Task
	if err := json.Unmarshal(msg.Data(), &t); err != nil || (t.Kind == "" && t.Batch == nil) || (t.Kind == kindOBS && t.OBS == nil) {
		w.o.Logf("unreadable task dropped: %v", err)
		return msg.Term()
	}
	if err := checkSubjectToken(t.RunID); err != nil {
		w.o.Logf("task dropped: %v", err) // no subject to answer on
		return msg.Term()
	}
	if t.Version != Version {
		_ = msg.Nak()
		return fmt.Errorf("version mismatch: task of run %s is version %s but this worker is %s; run the same darwinlm build everywhere", t.RunID, t.Version, Version)
	}
	md, _ := msg.Metadata()
	delivered := uint64(1)
	if md != nil {
		delivered = md.NumDelivered
	}
	// Sign of life while computing; a killed worker stops sending it and
	// the task goes to another one after the deadline.
	hb, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		tk := time.NewTicker(max(aw/3, 100*time.Millisecond))
		defer tk.Stop()
		for {
			select {
			case <-hb.Done():
				return
			case <-tk.C:
				_ = msg.InProgress()
			}
		}
	}()
	w.o.Logf("task %s of run %s (delivery %d)", t.key(), t.RunID, delivered)
	if w.o.Delay > 0 {
		time.Sleep(w.o.Delay)
	}
	t0 := time.Now()
	r := Result{Version: Version, RunID: t.RunID, Generation: t.Generation, Stage: t.Stage, Candidate: t.Candidate, Digest: t.Digest,
		Worker: w.o.ID, Backend: w.be.Name(), Delivered: delivered}
	var sc evolve.Score
	var err error
	switch t.Kind {
	case "":
		sc, err = w.evaluate(ctx, &t)
	case kindOBS:
		r.Object, err = w.runOBS(ctx, &t)
	default:
		err = fmt.Errorf("unknown task kind %q", t.Kind)
	}
	if ctx.Err() != nil {
		_ = msg.Nak() // stopping: someone else takes it
		return nil
	}
	if err != nil {
		r.Error = err.Error()
		w.o.Logf("task %s failed: %v", t.key(), err)
	} else {
		r.Fitness, r.Before, r.Params = math.Float64bits(sc.Fitness), math.Float64bits(sc.Before), sc.Params
	}
	r.Seconds = time.Since(t0).Seconds()
	b, _ := json.Marshal(&r)
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := w.c.JS.Publish(pctx, resultSubject(t.RunID, t.key()), b); err != nil {
		_ = msg.Nak()
		return fmt.Errorf("publishing the result of task %s: %w", t.key(), err)
	}
	stop()
	if err := msg.DoubleAck(pctx); err != nil {
		// The result is stored: a redelivered copy becomes a duplicate the
		// coordinator drops.
		w.o.Logf("ack of task %s: %v", t.key(), err)
	}
	return nil
}

func (w *worker) evaluate(ctx context.Context, t *Task) (evolve.Score, error) {
	if w.job != t.Job {
		ev, err := w.load(ctx, t.Job)
		if err != nil {
			return evolve.Score{}, err
		}
		w.job, w.ev = t.Job, ev
	}
	tctx := evolve.WithTask(ctx, evolve.TaskInfo{RunID: t.RunID, Generation: t.Generation, Stage: t.Stage, Candidate: t.Candidate})
	return w.ev.Evaluate(tctx, 0, t.Levels, t.Batch, t.Before)
}

// load builds a job's evaluator from the object store.
func (w *worker) load(ctx context.Context, name string) (*evolve.ModelEvaluator, error) {
	read := func(what, obj string) ([]byte, error) {
		p, err := w.c.fetch(ctx, obj, w.o.Cache)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return os.ReadFile(p)
	}
	b, err := read("job", name)
	if err != nil {
		return nil, err
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job %s: %w", short(name), err)
	}
	if j.Version != Version {
		return nil, fmt.Errorf("job %s is version %s, this worker %s", short(name), j.Version, Version)
	}
	mp, err := w.c.fetch(ctx, j.Model, w.o.Cache)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	f, err := os.Open(mp)
	if err != nil {
		return nil, err
	}
	dense, err := readModel(f, short(j.Model))
	f.Close()
	if err != nil {
		return nil, err
	}
	dp, err := w.c.fetch(ctx, j.Database, w.o.Cache)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	dbDir := dp + ".d"
	if err := untar(dp, dbDir); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	db, err := prune.OpenDatabase(dbDir)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if err := db.CheckModel(dense); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pb, err := read("pools", j.Pools)
	if err != nil {
		return nil, err
	}
	var pools map[string][][]int
	if err := json.Unmarshal(pb, &pools); err != nil {
		return nil, fmt.Errorf("pools: %w", err)
	}
	var cache *evolve.DenseCache
	if j.Cache != "" {
		cp, err := w.c.fetch(ctx, j.Cache, w.o.Cache)
		if err != nil {
			return nil, fmt.Errorf("dense-logit cache: %w", err)
		}
		f, err := os.Open(cp)
		if err != nil {
			return nil, err
		}
		cache, err = evolve.ReadDenseCache(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	var opts train.Options
	if err := json.Unmarshal(j.Train, &opts); err != nil {
		return nil, fmt.Errorf("job %s: training options: %w", short(name), err)
	}
	w.o.Logf("job %s loaded (model %s, database %s)", short(name), short(j.Model), short(j.Database))
	return evolve.NewModelEvaluator(w.be, 1, dense, evolve.DatabaseStitcher(db, dense), opts, j.Fitness, cache, pools["fit"], pools["train"], nil)
}
