package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/safetensors"
)

// Checkpoint layout inside an output folder OUT:
//
//	OUT/step-00000100/            one complete checkpoint
//	    model files               Hugging Face layout (written by SaveModel, when set)
//	    train_state.safetensors   "param.<name>" (exact float32 weights) and the
//	                              optimizer state ("adamw.m.<name>", "adamw.v.<name>")
//	    state.json                step, optimizer step counter, data position
//	                              (epoch, pos, seed) and the run's settings
//	    train_log.parquet         the log rows up to this step
//	OUT/latest                    name of the newest complete checkpoint
//	OUT/train_log.parquet         the log (rewritten at each checkpoint and at the end)
//
// A checkpoint is written into OUT/.tmp-step-…, every file is fsynced, the
// folder is renamed into place and OUT is fsynced; only then is OUT/latest
// replaced (temp file + fsync + rename). A crash at any moment leaves
// OUT/latest naming a complete checkpoint (or no checkpoint at all).

// State is the JSON side file of a checkpoint.
type State struct {
	Step      int             `json:"step"`
	OptSteps  int             `json:"optimizer_steps"`
	Optimizer string          `json:"optimizer"`
	Epoch     int             `json:"data_epoch"`
	Pos       int             `json:"data_pos"`
	Seed      uint64          `json:"seed"`
	Tokens    int64           `json:"tokens"`
	Settings  json.RawMessage `json:"settings"` // the run's identity; resume refuses a mismatch
}

// LogRow is one row of the training log.
type LogRow struct {
	Step       int64   `parquet:"step"`
	Tokens     int64   `parquet:"tokens"`
	Loss       float64 `parquet:"loss"`
	LR         float64 `parquet:"lr"`
	GradNorm   float64 `parquet:"grad_norm"`
	TokensPerS float64 `parquet:"tokens_per_s"`
}

// SaveModel, when not nil, writes the Hugging Face files of the model into a
// checkpoint folder (the CLI sets it to model.SaveHF).
type SaveModel func(dir string) error

// SaveCheckpoint writes a checkpoint of t and the loader position into out.
func SaveCheckpoint(out string, t *Trainer, ld *Loader, tokens int64, settings json.RawMessage, log []LogRow, save SaveModel, keep int) (string, error) {
	if err := t.Sync(); err != nil { // the weights and optimizer state from the device
		return "", err
	}
	name := fmt.Sprintf("step-%08d", t.Step)
	final := filepath.Join(out, name)
	tmp := filepath.Join(out, ".tmp-"+name)
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if save != nil {
		if err := save(tmp); err != nil {
			return "", fmt.Errorf("checkpoint %s: saving the model: %w", name, err)
		}
	}
	var ts []safetensors.Tensor
	for _, p := range t.Params() {
		ts = append(ts, safetensors.Tensor{Name: "param." + p.Name, DType: safetensors.F32, Shape: []int64{int64(len(p.Data))}, Data: p.Data})
	}
	for _, s := range t.Opt.State(t.Params()) {
		ts = append(ts, safetensors.Tensor{Name: s.Name, DType: safetensors.F32, Shape: []int64{int64(len(s.Data))}, Data: s.Data})
	}
	if err := safetensors.WriteFile(filepath.Join(tmp, "train_state.safetensors"), ts, map[string]string{"format": "darwinlm-train-state"}); err != nil {
		return "", err
	}
	st := State{Step: t.Step, OptSteps: t.Opt.Steps(), Optimizer: t.Opt.Name(), Seed: ld.Seed, Epoch: ld.Epoch, Pos: ld.Pos, Tokens: tokens, Settings: settings}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteSync(filepath.Join(tmp, "state.json"), append(b, '\n')); err != nil {
		return "", err
	}
	if err := WriteLog(filepath.Join(tmp, "train_log.parquet"), log); err != nil {
		return "", err
	}
	if err := syncTree(tmp); err != nil {
		return "", err
	}
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(out); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(out, "latest"), []byte(name+"\n")); err != nil {
		return "", err
	}
	if err := WriteLog(filepath.Join(out, "train_log.parquet"), log); err != nil {
		return "", err
	}
	pruneCheckpoints(out, name, keep)
	return final, nil
}

// LatestCheckpoint returns the folder named by out/latest, or "" when there
// is none.
func LatestCheckpoint(out string) (string, error) {
	b, err := os.ReadFile(filepath.Join(out, "latest"))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(b))
	if name == "" || strings.ContainsAny(name, "/\\") {
		return "", fmt.Errorf("%s/latest: bad checkpoint name %q", out, name)
	}
	return filepath.Join(out, name), nil
}

// LoadCheckpoint restores the weights, optimizer state and loader position
// saved in dir into t and ld, and returns the state and log.
func LoadCheckpoint(dir string, t *Trainer, ld *Loader) (State, []LogRow, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, nil, fmt.Errorf("checkpoint %s/state.json: %w", dir, err)
	}
	if st.Optimizer != t.Opt.Name() {
		return st, nil, fmt.Errorf("checkpoint %s was written by optimizer %s, this run uses %s", dir, st.Optimizer, t.Opt.Name())
	}
	f, err := safetensors.Open(filepath.Join(dir, "train_state.safetensors"))
	if err != nil {
		return st, nil, err
	}
	defer f.Close()
	load := func(name string, dst []float32) error {
		v, _, err := f.Float32(name)
		if err != nil {
			return err
		}
		if len(v) != len(dst) {
			return fmt.Errorf("checkpoint %s: tensor %s has %d elements, the model needs %d", dir, name, len(v), len(dst))
		}
		copy(dst, v)
		return nil
	}
	for _, p := range t.Params() {
		if err := load("param."+p.Name, p.Data); err != nil {
			return st, nil, err
		}
	}
	for _, s := range t.Opt.State(t.Params()) {
		if err := load(s.Name, s.Data); err != nil {
			return st, nil, err
		}
	}
	if err := t.Reload(); err != nil { // onto the device
		return st, nil, err
	}
	t.Step = st.Step
	t.Opt.SetSteps(st.OptSteps)
	if st.Seed != ld.Seed {
		return st, nil, fmt.Errorf("checkpoint %s used data seed %d, this run %d", dir, st.Seed, ld.Seed)
	}
	ld.Epoch, ld.Pos = st.Epoch, st.Pos
	var log []LogRow
	if _, err := os.Stat(filepath.Join(dir, "train_log.parquet")); err == nil {
		if log, err = parquet.ReadFile[LogRow](filepath.Join(dir, "train_log.parquet")); err != nil {
			return st, nil, fmt.Errorf("checkpoint %s: reading the log: %w", dir, err)
		}
	}
	return st, log, nil
}

// ReadParams reads the exact float32 weights of a checkpoint folder, by
// Hugging Face name.
func ReadParams(dir string) (map[string][]float32, error) {
	f, err := safetensors.Open(filepath.Join(dir, "train_state.safetensors"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, t := range f.Tensors {
		if name, ok := strings.CutPrefix(t.Name, "param."); ok {
			v, _, err := f.Float32(t.Name)
			if err != nil {
				return nil, err
			}
			out[name] = v
		}
	}
	return out, nil
}

// WriteLog writes the log rows to path atomically.
func WriteLog(path string, rows []LogRow) error {
	tmp := path + ".tmp"
	if err := parquet.WriteFile(tmp, rows); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := fsyncFile(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func pruneCheckpoints(out, keepName string, keep int) {
	if keep <= 0 {
		return
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") && e.Name() != keepName {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep-1 {
		os.RemoveAll(filepath.Join(out, names[0]))
		names = names[1:]
	}
}

func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncTree fsyncs every file and folder under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return atomicfile.SyncDir(p)
		}
		if d.Type().IsRegular() {
			return fsyncFile(p)
		}
		return nil
	})
}

// CompareSettings returns nil when a checkpoint at step `step` written with
// settings `was` may be resumed by a run with settings `now`: they are equal,
// or equal but for a larger step budget under a constant schedule (the
// learning rate of a step does not depend on the total then, so the extended
// run is bitwise the run that asked for the larger budget from the start).
// Otherwise the error names every setting that differs, checkpoint's value
// first ("lr 0.0001 vs 0.005"), and says what to do instead.
func CompareSettings(was, now json.RawMessage, step int) error {
	decode := func(b json.RawMessage) (map[string]any, error) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		m := map[string]any{}
		return m, d.Decode(&m)
	}
	a, err := decode(was)
	if err != nil {
		return fmt.Errorf("settings of the checkpoint are unreadable: %w", err)
	}
	b, err := decode(now)
	if err != nil {
		return err
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diff []string
	for k := range keys {
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			diff = append(diff, k)
		}
	}
	if len(diff) == 0 {
		return nil
	}
	sort.Strings(diff)
	show := func(v any) string {
		if v == nil {
			return "(unset)"
		}
		if s, ok := v.(string); ok {
			return strconv.Quote(s)
		}
		return fmt.Sprint(v)
	}
	var parts []string
	for _, k := range diff {
		parts = append(parts, fmt.Sprintf("%s %s vs %s", k, show(a[k]), show(b[k])))
	}
	if len(diff) == 1 && diff[0] == "steps" {
		newSteps, err1 := strconv.Atoi(fmt.Sprint(b["steps"]))
		schedule := fmt.Sprint(b["schedule"])
		switch {
		case err1 == nil && newSteps >= step && schedule == "constant":
			return nil // extending (or shortening ahead of) a constant-schedule run
		case err1 == nil && newSteps < step:
			return fmt.Errorf("written at step %d, past this run's %d steps (checkpoint vs this run: %s)", step, newSteps, parts[0])
		default:
			return fmt.Errorf("the step budget differs (checkpoint vs this run: %s) and the %s schedule depends on it, "+
				"so the run cannot be extended bitwise; start a new run from its model instead (--model OUT --out NEW_OUT)", parts[0], schedule)
		}
	}
	return fmt.Errorf("written with other settings (checkpoint vs this run): %s", strings.Join(parts, ", "))
}
