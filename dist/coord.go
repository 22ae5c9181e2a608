package dist

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darwinlm/darwinlm-go/evolve"
)

// Coordinator evaluates a search's candidates through the queue: one task
// per Evaluate call, answered by whichever worker takes it. Results already
// in the result stream (a resumed coordinator) are used without
// recomputation; duplicates (a task redelivered after its worker published
// but before it acknowledged) are recognised by their task key and dropped.
type Coordinator struct {
	c      *Conn
	run    string
	job    string
	local  *evolve.ModelEvaluator
	logDir string
	logf   func(format string, args ...any)

	mu      sync.Mutex
	results map[string][]*Result // by task key, in arrival order
	notify  map[string]chan struct{}
	rows    []TaskRow
}

// Remote returns the evolve.RemoteFunc of a coordinator on the queue at
// url; logDir (the search's --log) receives tasks.parquet.
func Remote(url, logDir string) evolve.RemoteFunc {
	return func(ctx context.Context, in evolve.RemoteInputs) (evolve.Evaluator, error) {
		return NewCoordinator(ctx, url, logDir, in)
	}
}

// NewCoordinator connects, uploads the inputs (each once: the object
// store is keyed by content hash), publishes the job and replays the
// run's earlier results. The connection closes when ctx ends.
func NewCoordinator(ctx context.Context, url, logDir string, in evolve.RemoteInputs) (*Coordinator, error) {
	if err := checkSubjectToken(in.RunID); err != nil {
		return nil, fmt.Errorf("--run-id: %w", err)
	}
	c, err := Connect(ctx, url, "darwinlm-coordinator", 0)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := c.checkVersion(ctx, "coordinator"); err != nil {
		return nil, err
	}
	co := &Coordinator{c: c, run: in.RunID, local: in.Local, logDir: logDir, results: map[string][]*Result{},
		notify: map[string]chan struct{}{}, logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "dist: "+f+"\n", a...) }}
	if co.job, err = c.uploadJob(ctx, in); err != nil {
		return nil, fmt.Errorf("uploading the search's inputs: %w", err)
	}
	if err := co.listen(ctx); err != nil {
		return nil, err
	}
	co.announced(ctx)
	ok = true
	go func() { <-ctx.Done(); c.Close() }()
	return co, nil
}

// uploadJob puts the model, database, pools and cache into the object
// store and returns the job's name.
func (c *Conn) uploadJob(ctx context.Context, in evolve.RemoteInputs) (string, error) {
	tmp, err := os.MkdirTemp("", "darwinlm-dist-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	j := Job{Version: Version, Fitness: in.Fitness}
	writeTo := func(name string, write func(f *os.File) error) (string, error) {
		p := filepath.Join(tmp, name)
		f, err := os.Create(p)
		if err != nil {
			return "", err
		}
		if err := write(f); err != nil {
			f.Close()
			return "", err
		}
		if err := f.Close(); err != nil {
			return "", err
		}
		return c.putFile(ctx, p)
	}
	if j.Model, err = writeTo("model.gob", func(f *os.File) error { return writeModel(f, in.Dense) }); err != nil {
		return "", fmt.Errorf("model: %w", err)
	}
	if err := tarDir(in.Database.Dir, filepath.Join(tmp, "db.tar")); err != nil {
		return "", fmt.Errorf("database %s: %w", in.Database.Dir, err)
	}
	if j.Database, err = c.putFile(ctx, filepath.Join(tmp, "db.tar")); err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	pools, _ := json.Marshal(map[string][][]int{"fit": in.FitPool, "train": in.TrainPool})
	if j.Pools, err = c.putBytes(ctx, pools); err != nil {
		return "", fmt.Errorf("pools: %w", err)
	}
	if in.Cache != nil {
		if j.Cache, err = writeTo("cache.bin", func(f *os.File) error { _, err := in.Cache.WriteTo(f); return err }); err != nil {
			return "", fmt.Errorf("dense-logit cache: %w", err)
		}
	}
	if j.Train, err = json.Marshal(in.Train); err != nil {
		return "", err
	}
	b, _ := json.Marshal(j)
	return c.putBytes(ctx, b)
}

// listen replays the run's results and follows new ones; it returns once
// the replay has caught up.
func (co *Coordinator) listen(ctx context.Context) error {
	filter := resultSubject(co.run, ">")
	cons, err := co.c.Results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return fmt.Errorf("result consumer: %w", err)
	}
	info, err := co.c.Results.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return err
	}
	var stored uint64
	for _, n := range info.State.Subjects {
		stored += n
	}
	caught := make(chan struct{})
	var once sync.Once
	if stored == 0 {
		once.Do(func() { close(caught) })
	}
	replaying := stored > 0
	_, err = cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		co.receive(m.Subject(), m.Data(), replaying)
		if md != nil && md.NumPending == 0 {
			replaying = false
			once.Do(func() { close(caught) })
		}
	})
	if err != nil {
		return fmt.Errorf("result consumer: %w", err)
	}
	select {
	case <-caught:
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("replaying %d stored results of run %s timed out", stored, co.run)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// receive files one result.
func (co *Coordinator) receive(subject string, data []byte, replay bool) {
	key := strings.TrimPrefix(subject, resultSubject(co.run, ""))
	var r Result
	if err := json.Unmarshal(data, &r); err != nil || r.Version != Version {
		co.logf("result %s ignored: %s", key, map[bool]string{true: "unreadable", false: "version " + r.Version + " is not " + Version}[err != nil])
		return
	}
	if replay && r.Error != "" {
		return // an earlier attempt failed: the resumed run asks again
	}
	co.mu.Lock()
	defer co.mu.Unlock()
	dup := false
	for _, o := range co.results[key] {
		dup = dup || o.Digest == r.Digest
	}
	row := TaskRow{RunID: r.RunID, Task: key, Generation: int64(r.Generation), Stage: int64(r.Stage), Candidate: r.Candidate, Worker: r.Worker,
		Backend: r.Backend, Delivered: int64(r.Delivered), Seconds: r.Seconds, Duplicate: dup, Replayed: replay, Error: r.Error}
	co.rows = append(co.rows, row)
	if !replay {
		if dup {
			co.logf("duplicate result of task %s from worker %s dropped", key, r.Worker)
		} else if r.Delivered > 1 {
			co.logf("task %s was redelivered (delivery %d) and done by worker %s", key, r.Delivered, r.Worker)
		}
	}
	if co.logDir != "" {
		if err := writeTaskLog(filepath.Join(co.logDir, TaskLogFile), co.rows); err != nil {
			co.logf("task log: %v", err)
		}
	}
	if dup {
		return
	}
	co.results[key] = append(co.results[key], &r)
	if ch, ok := co.notify[key]; ok {
		close(ch)
		delete(co.notify, key)
	}
}

// Params counts locally (no compute).
func (co *Coordinator) Params(levels []int) (int64, error) { return co.local.Params(levels) }

// HeldOut runs on the coordinator: it is once per --eval-every generations.
func (co *Coordinator) HeldOut(ctx context.Context, levels []int) (ppl, kl, calibPPL float64, err error) {
	return co.local.HeldOut(ctx, levels)
}

// Evaluate publishes the task (unless its result is in) and waits.
func (co *Coordinator) Evaluate(ctx context.Context, _ int, levels []int, b *evolve.Batch, before bool) (evolve.Score, error) {
	ti, ok := evolve.TaskFrom(ctx)
	if !ok {
		return evolve.Score{}, fmt.Errorf("dist: Evaluate called without a task in its context")
	}
	t := Task{Version: Version, RunID: co.run, Generation: ti.Generation, Stage: ti.Stage, Candidate: ti.Candidate, Job: co.job,
		Levels: levels, Batch: b, Before: before}
	t.Digest = t.digest()
	r, err := co.await(ctx, &t)
	if err != nil {
		return evolve.Score{}, err
	}
	return r.Score(), nil
}

// await publishes t (unless its result is in) and waits for its result.
func (co *Coordinator) await(ctx context.Context, t *Task) (*Result, error) {
	key := t.key()
	published := false
	for {
		co.mu.Lock()
		var got *Result
		for _, r := range co.results[key] {
			if r.Digest == t.Digest {
				got = r
			}
		}
		ch := co.notify[key]
		if got == nil && ch == nil {
			ch = make(chan struct{})
			co.notify[key] = ch
		}
		co.mu.Unlock()
		if got != nil {
			if got.Error != "" {
				return nil, fmt.Errorf("worker %s (%s): %s", got.Worker, got.Backend, got.Error)
			}
			return got, nil
		}
		if !published {
			if err := co.publish(ctx, t, key); err != nil {
				return nil, err
			}
			published = true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (co *Coordinator) publish(ctx context.Context, t *Task, key string) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	m := nats.NewMsg(TaskSubject)
	m.Data = b
	// The server drops a second copy within the duplicate window (a
	// coordinator resumed right after it was killed).
	m.Header.Set(jetstream.MsgIDHeader, co.run+"."+key+"."+t.Digest)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := co.c.JS.PublishMsg(pctx, m); err != nil {
		return fmt.Errorf("publishing task %s of run %s: %w", key, co.run, err)
	}
	return nil
}

// announced reports the workers that said hello, warning about others'
// versions.
func (co *Coordinator) announced(ctx context.Context) {
	keys, err := co.c.Workers.ListKeys(ctx)
	if err != nil {
		return
	}
	n := 0
	for k := range keys.Keys() {
		e, err := co.c.Workers.Get(ctx, k)
		if err != nil {
			continue
		}
		var a Announce
		if json.Unmarshal(e.Value(), &a) != nil {
			continue
		}
		n++
		if a.Version != Version {
			co.logf("worker %s on %s runs version %s, not %s: it will refuse the tasks", a.Worker, a.Host, a.Version, Version)
		}
	}
	co.logf("run %s on %s, %d worker(s) announced", co.run, co.c.URL, n)
}
