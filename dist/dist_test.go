package dist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/evolve"
	"github.com/darwinlm/darwinlm-go/hub"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
)

// The test binary doubles as the worker and coordinator processes:
// DIST_TEST_ROLE selects the part it plays.
func TestMain(m *testing.M) {
	progress.Quiet = true
	switch os.Getenv("DIST_TEST_ROLE") {
	case "worker":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		orphaned(stop)
		d, _ := time.ParseDuration(os.Getenv("DIST_DELAY"))
		err := RunWorker(ctx, WorkerOptions{URL: os.Getenv("DIST_URL"), Backend: "cpu", Cache: os.Getenv("DIST_CACHE"),
			ID: os.Getenv("DIST_ID"), Delay: d})
		exit(err)
	case "coordinator":
		c := searchConfig(os.Getenv("DIST_DB"), os.Getenv("DIST_DIR"))
		orphaned(func() { os.Exit(2) })
		c.Remote = Remote(os.Getenv("DIST_URL"), c.Log)
		c.AfterGeneration = func(evolve.GenerationRow) { time.Sleep(400 * time.Millisecond) }
		_, err := evolve.Run(context.Background(), c)
		exit(err)
	}
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// orphaned calls stop when the test process that started this one is
// gone (a test killed by its timeout must not leave workers behind).
func orphaned(stop func()) {
	parent := os.Getppid()
	go func() {
		for os.Getppid() == parent {
			time.Sleep(200 * time.Millisecond)
		}
		stop()
	}()
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

const (
	stories260K = "hf:karpathy/tinyllamas/stories260K/stories260K.bin"
	storiesText = "hf-dataset:roneneldan/TinyStories/default/validation_prefix"
)

var fixture struct {
	once          sync.Once
	dir, db, want string // temp folder, database, local search folder
	calib         [][]int
	err           error
}

// searchConfig is a tiny search on stories260K (KL fitness on cached
// dense logits, fine-tuning in both stages, held-out evaluation).
func searchConfig(db, dir string) evolve.Config {
	c := evolve.DefaultConfig()
	c.Model, c.Database, c.Calib, c.Backend = stories260K, db, storiesText, "cpu"
	c.CalibTokens, c.TrainPoolTokens, c.EvalTokens, c.SeqLen = 2000, 3000, 500, 128
	c.Offspring, c.Survivors, c.FitnessTokens, c.TrainTokens = 5, []int{2, 1}, []int{64, 128}, []int{100, 200}
	c.Generations, c.EvalEvery, c.Seed, c.FitnessBefore = 3, 2, 5, true
	c.Log, c.Out = filepath.Join(dir, "log"), filepath.Join(dir, "levels.txt")
	return c
}

// setup builds (once) a 6-level database of stories260K and the
// single-process search every distributed run must reproduce.
func setup(t testing.TB) (db, want string) {
	t.Helper()
	if hub.Mirror() == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	if testing.Short() {
		t.Skip("builds a pruning database and runs searches")
	}
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "dist-test-")
		if fixture.err != nil {
			return
		}
		be, _ := backend.Get("cpu")
		m, tok, err := model.Open(stories260K, "")
		if err != nil {
			fixture.err = err
			return
		}
		docs, err := data.ReadTexts(storiesText)
		if err != nil {
			fixture.err = err
			return
		}
		calib, err := prune.SampleSequences(docs[:len(docs)/2], tok, 4096, 128, "random", 0)
		if err != nil {
			fixture.err = err
			return
		}
		fixture.calib = calib
		fixture.db = filepath.Join(fixture.dir, "db")
		if fixture.err = prune.Build(context.Background(), be, m, calib, prune.BuildOptions{Levels: 6, ModelID: stories260K}, fixture.db); fixture.err != nil {
			return
		}
		fixture.want = filepath.Join(fixture.dir, "local")
		if fixture.err = os.Mkdir(fixture.want, 0o755); fixture.err != nil {
			return
		}
		_, fixture.err = evolve.Run(context.Background(), searchConfig(fixture.db, fixture.want))
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	return fixture.db, fixture.want
}

// startQueue runs an embedded queue on a free loopback port.
func startQueue(t *testing.T, ackWait time.Duration) *Queue {
	t.Helper()
	q, err := StartQueue(context.Background(), "127.0.0.1:0", t.TempDir(), ackWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Stop)
	return q
}

type proc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed when the process has exited
	err   error
	mu    sync.Mutex
	log   bytes.Buffer
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startProc runs the test binary in a role; its stderr lines arrive on
// lines (and are kept).
func startProc(t testing.TB, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	// A session of its own, as a process on another machine would have:
	// with the kernel's autogroup scheduling, processes of one session
	// share one slice of a loaded machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	p := &proc{cmd: cmd, lines: make(chan string, 1000), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() { p.err = cmd.Wait(); pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func startWorker(t testing.TB, url, id string, delay time.Duration) *proc {
	return startProc(t, "DIST_TEST_ROLE=worker", "DIST_URL="+url, "DIST_ID="+id, "DIST_CACHE="+filepath.Join(t.TempDir(), "cache"),
		"DIST_DELAY="+delay.String(), "GOMAXPROCS=1")
}

// sameSearch compares two search folders: every logged row apart from wall
// times, and the final configuration byte for byte.
func sameSearch(t *testing.T, want, got string) {
	t.Helper()
	wc, err := parquet.ReadFile[evolve.CandidateRow](filepath.Join(want, "log", evolve.CandidatesFile))
	if err != nil {
		t.Fatal(err)
	}
	gc, err := parquet.ReadFile[evolve.CandidateRow](filepath.Join(got, "log", evolve.CandidatesFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range wc {
		wc[i].Seconds = 0
	}
	for i := range gc {
		gc[i].Seconds = 0
	}
	if len(wc) != len(gc) {
		t.Fatalf("candidates.parquet: %d rows, want %d", len(gc), len(wc))
	}
	for i := range wc {
		if !reflect.DeepEqual(wc[i], gc[i]) {
			t.Fatalf("candidates.parquet row %d:\n got %+v\nwant %+v", i, gc[i], wc[i])
		}
	}
	wg, err := parquet.ReadFile[evolve.GenerationRow](filepath.Join(want, "log", evolve.GenerationsFile))
	if err != nil {
		t.Fatal(err)
	}
	gg, err := parquet.ReadFile[evolve.GenerationRow](filepath.Join(got, "log", evolve.GenerationsFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range wg {
		wg[i].Seconds = 0
	}
	for i := range gg {
		gg[i].Seconds = 0
	}
	if !reflect.DeepEqual(wg, gg) {
		t.Fatalf("generations.parquet differs:\n got %+v\nwant %+v", gg, wg)
	}
	a, _ := os.ReadFile(filepath.Join(want, "levels.txt"))
	b, err := os.ReadFile(filepath.Join(got, "levels.txt"))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("final configuration differs (%v):\n%s\nwant\n%s", err, b, a)
	}
}

func taskRows(t *testing.T, dir string) []TaskRow {
	t.Helper()
	rows, err := parquet.ReadFile[TaskRow](filepath.Join(dir, "log", TaskLogFile))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestThreeWorkers: a coordinator and three worker processes reproduce
// the single-process search.
func TestThreeWorkers(t *testing.T) {
	db, want := setup(t)
	q := startQueue(t, 2*time.Second)
	for i := range 3 {
		startWorker(t, q.URL, fmt.Sprintf("w%d", i), 0)
	}
	dir := t.TempDir()
	c := searchConfig(db, dir)
	c.Remote = Remote(q.URL, c.Log)
	if _, err := evolve.Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	sameSearch(t, want, dir)
	workers := map[string]bool{}
	for _, r := range taskRows(t, dir) {
		workers[r.Worker] = true
	}
	if len(workers) < 2 {
		t.Errorf("only workers %v served tasks", workers)
	}
}

// TestWorkerKilled: a worker SIGKILLed holding a task loses nothing; the
// task is redelivered and the log says so.
func TestWorkerKilled(t *testing.T) {
	db, want := setup(t)
	q := startQueue(t, time.Second)
	victim := startWorker(t, q.URL, "victim", time.Hour)
	dir := t.TempDir()
	c := searchConfig(db, dir)
	c.Remote = Remote(q.URL, c.Log)
	done := make(chan error, 1)
	go func() { _, err := evolve.Run(context.Background(), c); done <- err }()
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case l := <-victim.lines:
			if strings.Contains(l, ": task ") {
				break wait
			}
		case <-deadline:
			t.Fatalf("the victim took no task:\n%s", victim.stderr())
		}
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	startWorker(t, q.URL, "w1", 0)
	startWorker(t, q.URL, "w2", 0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sameSearch(t, want, dir)
	redelivered := false
	for _, r := range taskRows(t, dir) {
		redelivered = redelivered || r.Delivered > 1
		if r.Worker == "victim" {
			t.Errorf("the killed worker delivered a result: %+v", r)
		}
	}
	if !redelivered {
		t.Error("tasks.parquet shows no redelivery")
	}
}

// TestCoordinatorKilled: a coordinator SIGKILLed mid-run and resumed
// reaches the same rows and configuration.
func TestCoordinatorKilled(t *testing.T) {
	db, want := setup(t)
	q := startQueue(t, 2*time.Second)
	startWorker(t, q.URL, "w1", 0)
	startWorker(t, q.URL, "w2", 0)
	dir := t.TempDir()
	co := startProc(t, "DIST_TEST_ROLE=coordinator", "DIST_URL="+q.URL, "DIST_DB="+db, "DIST_DIR="+dir)
	gens := filepath.Join(dir, "log", evolve.GenerationsFile)
	deadline := time.Now().Add(90 * time.Second)
	for {
		rows, err := parquet.ReadFile[evolve.GenerationRow](gens)
		if err == nil && len(rows) >= 2 {
			break
		}
		exited := false
		select {
		case <-co.done:
			exited = true
		default:
		}
		if time.Now().After(deadline) || exited {
			t.Fatalf("the coordinator logged no generation:\n%s", co.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	co.cmd.Process.Signal(syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	c := searchConfig(db, dir)
	c.Remote = Remote(q.URL, c.Log)
	c.Resume = true
	res, err := evolve.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed == 0 || res.Resumed >= c.Generations {
		t.Errorf("resumed at generation %d of %d: the kill was not mid-run", res.Resumed, c.Generations)
	}
	sameSearch(t, want, dir)
}

// TestUnreachableQueue: a clear error within seconds.
func TestUnreachableQueue(t *testing.T) {
	t0 := time.Now()
	_, err := Connect(context.Background(), "nats://127.0.0.1:1", "test", 0)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the queue") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if _, err := Connect(context.Background(), "http://x:1", "test", 0); err == nil || !strings.Contains(err.Error(), "nats://") {
		t.Errorf("bad scheme: %v", err)
	}
}

// TestVersionMismatch: a worker of another build is refused.
func TestVersionMismatch(t *testing.T) {
	q := startQueue(t, time.Second)
	w := startProc(t, "DIST_TEST_ROLE=worker", "DIST_URL="+q.URL, "DIST_ID=old", "DARWINLM_DIST_VERSION=darwinlm-dist/0")
	select {
	case <-w.done:
		if w.err == nil {
			t.Fatal("the worker of another version exited cleanly")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker of another version is still running")
	}
	time.Sleep(100 * time.Millisecond)
	if s := w.stderr(); !strings.Contains(s, "version mismatch") || !strings.Contains(s, "darwinlm-dist/0") {
		t.Errorf("stderr: %s", s)
	}
}

// TestMissingInput: a task whose job is not in the object store fails
// with a clear error that reaches the coordinator; the task is not lost
// silently (it is answered).
func TestMissingInput(t *testing.T) {
	q := startQueue(t, time.Second)
	c, err := Connect(context.Background(), q.URL, "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &Coordinator{c: c, run: "run1", job: strings.Repeat("ab", 32), results: map[string][]*Result{}, notify: map[string]chan struct{}{},
		logf: t.Logf}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := co.listen(ctx); err != nil {
		t.Fatal(err)
	}
	go RunWorker(ctx, WorkerOptions{URL: q.URL, Backend: "cpu", Cache: t.TempDir(), ID: "w", MaxTasks: 1, Logf: t.Logf})
	tctx := evolve.WithTask(ctx, evolve.TaskInfo{RunID: "run1", Generation: 0, Stage: 0, Candidate: 3})
	_, err = co.Evaluate(tctx, 0, []int{1, 2}, &evolve.Batch{Fit: []evolve.Piece{{Seq: 0, Len: 4}}, FitTokens: 4}, false)
	if err == nil || !strings.Contains(err.Error(), "missing from the object store") {
		t.Fatalf("got %v", err)
	}
}

// TestWireModel: the dense model survives the trip bit for bit, tied head
// included.
func TestWireModel(t *testing.T) {
	if hub.Mirror() == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	m, _, err := model.Open(stories260K, "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeModel(&buf, m); err != nil {
		t.Fatal(err)
	}
	got, err := readModel(&buf, "test")
	if err != nil {
		t.Fatal(err)
	}
	if prune.ModelHash(got) != prune.ModelHash(m) {
		t.Fatal("model hash changed")
	}
	if m.Cfg.Tied && &got.LMHead[0] != &got.Embed[0] {
		t.Error("tied head no longer tied")
	}
	b, _ := json.Marshal(got.Cfg)
	a, _ := json.Marshal(m.Cfg)
	if !bytes.Equal(a, b) {
		t.Errorf("config %s, want %s", b, a)
	}
}

// TestDistributedDatabase: the OBS passes of a database build done by
// three worker processes give bitwise the same files.
func TestDistributedDatabase(t *testing.T) {
	db, _ := setup(t)
	q := startQueue(t, 2*time.Second)
	for i := range 3 {
		startWorker(t, q.URL, fmt.Sprintf("w%d", i), 0)
	}
	m, _, err := model.Open(stories260K, "")
	if err != nil {
		t.Fatal(err)
	}
	opts := prune.BuildOptions{Levels: 6, ModelID: stories260K}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logDir := t.TempDir()
	co, err := NewOBSCoordinator(ctx, q.URL, DatabaseRunID(m, fixture.calib, opts), logDir)
	if err != nil {
		t.Fatal(err)
	}
	opts.OBS = co
	be, _ := backend.Get("cpu")
	out := filepath.Join(t.TempDir(), "db")
	if err := prune.Build(ctx, be, m, fixture.calib, opts, out); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(db, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(db, p)
			files = append(files, rel)
		}
		return nil
	})
	if len(files) < 3 {
		t.Fatalf("the local database has only %v", files)
	}
	for _, f := range files {
		a, _ := os.ReadFile(filepath.Join(db, f))
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs (%v)", f, err)
		}
	}
	rows, err := parquet.ReadFile[TaskRow](filepath.Join(logDir, TaskLogFile))
	if err != nil || len(rows) != 2*m.Cfg.Layers {
		t.Errorf("tasks.parquet: %d rows (%v), want %d", len(rows), err, 2*m.Cfg.Layers)
	}

	// Run again (a coordinator restarted after a crash): every module's
	// result is replayed from the stream, nothing is recomputed.
	logDir2 := t.TempDir()
	co2, err := NewOBSCoordinator(ctx, q.URL, DatabaseRunID(m, fixture.calib, opts), logDir2)
	if err != nil {
		t.Fatal(err)
	}
	opts.OBS, opts.Force = co2, true
	if err := prune.Build(ctx, be, m, fixture.calib, opts, out); err != nil {
		t.Fatal(err)
	}
	rows, err = parquet.ReadFile[TaskRow](filepath.Join(logDir2, TaskLogFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if !r.Replayed {
			t.Errorf("recomputed on the second run: %+v", r)
		}
	}
	a, _ := os.ReadFile(filepath.Join(db, prune.ManifestName))
	b, _ := os.ReadFile(filepath.Join(out, prune.ManifestName))
	if !bytes.Equal(a, b) {
		t.Error("the second run's manifest differs")
	}
}

// TestSparseKL: the top-k dense-logit cache travels too (one generation,
// fitness sparse_kl, two workers against the single-process run).
func TestSparseKL(t *testing.T) {
	db, _ := setup(t)
	cfg := func(dir string) evolve.Config {
		c := searchConfig(db, dir)
		c.Fitness, c.KLTopK, c.Generations = evolve.FitnessSparseKL, 7, 1
		return c
	}
	want := t.TempDir()
	if _, err := evolve.Run(context.Background(), cfg(want)); err != nil {
		t.Fatal(err)
	}
	q := startQueue(t, 2*time.Second)
	startWorker(t, q.URL, "w1", 0)
	startWorker(t, q.URL, "w2", 0)
	got := t.TempDir()
	c := cfg(got)
	c.Remote = Remote(q.URL, c.Log)
	if _, err := evolve.Run(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	sameSearch(t, want, got)
}
