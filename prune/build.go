package prune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/safetensors"
)

// BuildOptions configures Build.
type BuildOptions struct {
	// Levels is K: levels 0..K, level ℓ removing round(ℓ·U/K) units. Ignored
	// for a module kind whose explicit list is given.
	Levels int
	// NeuronMultiple rounds MLP level steps (0: DefaultNeuronMultiple).
	NeuronMultiple int
	// AttnRemoved / MLPRemoved are explicit schedules (heads / neurons
	// removed at each level, starting at 0), as the reference scripts give
	// them. When both are given they must have the same length.
	AttnRemoved, MLPRemoved []int
	// RelDamp is the relative damping (the reference's 1e-2 when 0 and
	// NoDamp is false).
	RelDamp float64
	NoDamp  bool
	// ModelID and Calib are recorded in the manifest.
	ModelID string
	Calib   CalibInfo
	// Force replaces an existing database at out.
	Force bool
	// BatchTokens bounds the rows of one forward batch (default 4096).
	BatchTokens int
	// MemLimit bounds the bytes of layer inputs kept in memory; above it
	// they are spilled to a temporary file beside out (default 4 GiB).
	MemLimit int64
	// OBS, when set, runs the greedy OBS passes elsewhere (package dist:
	// `darwinlm database --queue`): each module is submitted as soon as its
	// Hessian is complete and the results are written in module order at
	// the end. nil runs them here, one at a time.
	OBS OBSExecutor
}

// schedules returns the attention and MLP schedules for layer l.
func (o *BuildOptions) schedules(l *model.Layer) (attn, mlp []int, err error) {
	if o.AttnRemoved != nil && o.MLPRemoved != nil && len(o.AttnRemoved) != len(o.MLPRemoved) {
		return nil, nil, fmt.Errorf("--attn-removed has %d levels but --mlp-removed %d; they must have the same length", len(o.AttnRemoved), len(o.MLPRemoved))
	}
	k := o.Levels
	if o.AttnRemoved != nil {
		k = len(o.AttnRemoved) - 1
	} else if o.MLPRemoved != nil {
		k = len(o.MLPRemoved) - 1
	}
	if o.AttnRemoved != nil {
		if err := checkList(o.AttnRemoved, l.Heads, "--attn-removed", fmt.Sprintf("heads; the model has %d", l.Heads)); err != nil {
			return nil, nil, err
		}
		attn = o.AttnRemoved
	} else if attn, err = LevelSchedule(l.Heads, k, 1); err != nil {
		return nil, nil, err
	}
	if o.MLPRemoved != nil {
		if err := checkList(o.MLPRemoved, l.Inter, "--mlp-removed", fmt.Sprintf("neurons; the model has %d", l.Inter)); err != nil {
			return nil, nil, err
		}
		mlp = o.MLPRemoved
	} else {
		mult := o.NeuronMultiple
		if mult == 0 {
			mult = DefaultNeuronMultiple(l.Inter)
		}
		if mlp, err = LevelSchedule(l.Inter, k, mult); err != nil {
			return nil, nil, err
		}
	}
	return attn, mlp, nil
}

// CheckOutput fails when out exists and is not replaceable: a file, or a
// non-empty folder without force (and, with force, one that is not a
// pruning database).
func CheckOutput(out string, force bool) error {
	st, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(out)); err != nil {
			return fmt.Errorf("output %s: parent folder: %w", out, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("output %s exists and is not a folder", out)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if len(ents) == 0 {
		return nil
	}
	if !force {
		return fmt.Errorf("output %s exists and is not empty; pass --force to replace it", out)
	}
	if _, err := os.Stat(filepath.Join(out, ManifestName)); err != nil {
		return fmt.Errorf("output %s is not a pruning database (no %s); refusing to replace it", out, ManifestName)
	}
	return nil
}

// Build runs the dense model over the calibration sequences layer by layer,
// accumulates the Hessians of the o_proj and down_proj inputs, runs the
// greedy structured OBS pass on both and writes the database to out
// (atomically: a temporary folder renamed into place). Every Hessian comes
// from dense-model activations (paper-notes b.3). Memory: the layer inputs
// of all calibration tokens (spilled to a temporary file above MemLimit),
// one layer's two Hessians and their OBS state.
func Build(ctx context.Context, be backend.Backend, dense *model.Model, calib [][]int, opts BuildOptions, out string) error {
	c := dense.Cfg
	if len(calib) == 0 {
		return errors.New("database: no calibration sequences")
	}
	ntok := 0
	for i, s := range calib {
		if len(s) == 0 {
			return fmt.Errorf("database: calibration sequence %d is empty", i)
		}
		if c.MaxSeq > 0 && len(s) > c.MaxSeq {
			return fmt.Errorf("database: calibration sequence %d has %d tokens, more than the model's maximum %d", i, len(s), c.MaxSeq)
		}
		for _, id := range s {
			if id < 0 || id >= c.Vocab {
				return fmt.Errorf("database: calibration sequence %d has token %d outside the vocabulary (%d)", i, id, c.Vocab)
			}
		}
		ntok += len(s)
	}
	schedAttn := make([][]int, len(dense.Layers))
	schedMLP := make([][]int, len(dense.Layers))
	nlev := -1
	for i := range dense.Layers {
		l := &dense.Layers[i]
		if l.Heads != c.Heads || l.Inter != c.Intermediate || l.KVHeads != c.KVHeads {
			return fmt.Errorf("database: layer %d is already pruned (%d heads, %d neurons); build from the dense model", i, l.Heads, l.Inter)
		}
		a, m, err := opts.schedules(l)
		if err != nil {
			return err
		}
		schedAttn[i], schedMLP[i] = a, m
		if nlev >= 0 && (len(a) != nlev || len(m) != nlev) || len(a) != len(m) {
			return errors.New("database: attention and MLP schedules must have the same number of levels")
		}
		nlev = len(a)
	}
	damp := opts.RelDamp
	if damp == 0 && !opts.NoDamp {
		damp = 1e-2
	}
	if damp < 0 || math.IsNaN(damp) {
		return fmt.Errorf("--damp must be non-negative, got %v", damp)
	}
	if err := CheckOutput(out, opts.Force); err != nil {
		return err
	}
	batchTok := opts.BatchTokens
	if batchTok <= 0 {
		batchTok = 4096
	}
	memLimit := opts.MemLimit
	if memLimit <= 0 {
		memLimit = 4 << 30
	}

	parent := filepath.Dir(filepath.Clean(out))
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()

	man := Manifest{Version: FormatVersion, Model: opts.ModelID, ModelHash: ModelHash(dense),
		Arch:        ArchInfo{Hidden: c.Hidden, Layers: c.Layers, Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Intermediate: c.Intermediate},
		TotalParams: dense.NumParams(), Calibration: opts.Calib, RelDamp: damp, NumLevels: nlev}
	man.Calibration.Tokens, man.Calibration.Sequences = ntok, len(calib)

	// Batches of whole sequences, at most batchTok rows (a longer sequence
	// is a batch of its own).
	var batches [][][]int
	for i := 0; i < len(calib); {
		j, rows := i, 0
		for j < len(calib) && (j == i || rows+len(calib[j]) <= batchTok) {
			rows += len(calib[j])
			j++
		}
		batches = append(batches, calib[i:j])
		i = j
	}
	store, err := newHiddenStore(tmp, batches, c.Hidden, memLimit)
	if err != nil {
		return err
	}
	defer store.close()
	for b, seqs := range batches {
		x := store.buf(b)
		r := 0
		for _, s := range seqs {
			for _, id := range s {
				copy(x[r*c.Hidden:(r+1)*c.Hidden], dense.Embed[id*c.Hidden:(id+1)*c.Hidden])
				r++
			}
		}
		if err := store.put(b, x); err != nil {
			return err
		}
	}

	bar := progress.New(int64(len(dense.Layers)*(len(batches)+2)), "database layers")
	defer bar.Finish()
	nseq := float64(len(calib))
	// finishModule writes a module's levels and adds it to the manifest.
	finishModule := func(spec moduleSpec, res *OBSResult, err error) error {
		if err != nil {
			return fmt.Errorf("database: %s: %w", spec.mod.Name, err)
		}
		k, l := spec.k, spec.l
		mod := spec.mod
		mod.RemovalOrder = res.Order
		for lv, removed := range spec.sched {
			info := LevelInfo{Level: lv, Removed: removed, Error: res.Errors[lv]}
			kept := keptUnits(mod.Units, res.Order[:removed])
			if k == 0 {
				info.Params = attnParams(c, l, kept)
			} else {
				info.Params = mlpParams(c, l, len(kept))
			}
			if lv > 0 && removed < mod.Units {
				rel := filepath.Join(mod.Name, strconv.Itoa(lv)+".safetensors")
				if lv > 0 && removed == spec.sched[lv-1] && mod.Levels[lv-1].File != "" {
					rel = mod.Levels[lv-1].File // equal neighbouring levels share one file
				} else if err := writeLevel(tmp, rel, res.Weights[lv], spec.rows, len(kept)*spec.group); err != nil {
					return err
				}
				if err := fileInfo(tmp, rel, &info); err != nil {
					return err
				}
			}
			mod.Levels = append(mod.Levels, info)
		}
		man.Modules = append(man.Modules, mod)
		bar.Add(1)
		return nil
	}
	// The layers run on be's device with the weights resident; the
	// Hessians are formed there (Syrk) and summed in float64 on the host.
	dev := nn.DeviceFor(be)
	rd, err := dense.Upload(dev)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer rd.Release()
	ar := model.NewArena(dev)
	defer ar.Free()
	var pending []pendingModule
	for li := range dense.Layers {
		l := &dense.Layers[li]
		var hs [2]*hessian
		for k, n := range []int{l.Heads * c.HeadDim, l.Inter} {
			if hs[k], err = newHessian(dev, n); err != nil {
				return fmt.Errorf("database: layer %d: %w", li, err)
			}
		}
		for b, seqs := range batches {
			if err := ctx.Err(); err != nil {
				return err
			}
			x, err := store.get(b)
			if err != nil {
				return err
			}
			lens := make([]int, len(seqs))
			for i, s := range seqs {
				lens[i] = len(s)
			}
			if err := runLayer(dev, rd, ar, li, x, lens, hessianSink{hs}); err != nil {
				return fmt.Errorf("database: layer %d: %w", li, err)
			}
			if li+1 < len(dense.Layers) {
				if err := store.put(b, x); err != nil {
					return err
				}
			}
			bar.Add(1)
		}
		for k, spec := range []moduleSpec{
			{ModuleInfo{Name: attnName(li), Layer: li, Unit: "head", Units: l.Heads}, l.Wo, c.Hidden, c.HeadDim, schedAttn[li], 0, nil},
			{ModuleInfo{Name: mlpName(li), Layer: li, Unit: "neuron", Units: l.Inter}, l.Wdown, c.Hidden, 1, schedMLP[li], 0, nil},
		} {
			if err := ctx.Err(); err != nil {
				return err
			}
			h := hs[k].finish(2 / nseq)
			hs[k] = nil
			spec.k, spec.l = k, l
			task := OBSTask{Module: spec.mod.Name, W: spec.w, Rows: spec.rows, Cols: spec.mod.Units * spec.group, H: h,
				Opts: OBSOptions{Group: spec.group, Schedule: spec.sched, RelDamp: damp}}
			if opts.OBS == nil {
				res, err := GreedyOBS(task.W, task.Rows, task.Cols, task.H, task.Opts)
				if err := finishModule(spec, res, err); err != nil {
					return err
				}
				continue
			}
			wait, err := opts.OBS.SubmitOBS(ctx, task)
			if err != nil {
				return fmt.Errorf("database: %s: %w", spec.mod.Name, err)
			}
			pending = append(pending, pendingModule{spec, wait})
		}
	}
	for _, p := range pending {
		res, err := p.wait()
		if err := finishModule(p.spec, res, err); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(&man, "", " ")
	if err != nil {
		return err
	}
	store.close()
	if err := atomicfile.WriteSync(filepath.Join(tmp, ManifestName), append(js, '\n')); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	// Replace: an existing database (checked by CheckOutput) is moved aside
	// first, so that out always names a complete database or none.
	var old string
	if _, err := os.Stat(out); err == nil {
		old = tmp + ".old"
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("database: %w", err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			os.Rename(old, out)
		}
		return fmt.Errorf("database: %w", err)
	}
	done = true
	if old != "" {
		os.RemoveAll(old)
	}
	return atomicfile.SyncDir(parent)
}

// moduleSpec is one module's OBS problem inside Build.
type moduleSpec struct {
	mod   ModuleInfo
	w     []float32
	rows  int
	group int
	sched []int
	k     int          // 0 attention, 1 MLP
	l     *model.Layer // its dense layer
}

type pendingModule struct {
	spec moduleSpec
	wait func() (*OBSResult, error)
}

func keptUnits(units int, removed []int) []int {
	rm := make([]bool, units)
	for _, u := range removed {
		rm[u] = true
	}
	var out []int
	for u, r := range rm {
		if !r {
			out = append(out, u)
		}
	}
	return out
}

// attnParams counts the attention weights and biases left when keeping the
// given query heads with the K/V heads they read (paper-notes e; with MHA
// each head has its own K/V head).
func attnParams(c model.Config, l *model.Layer, kept []int) int64 {
	if len(kept) == 0 {
		return 0
	}
	kv := map[int]bool{}
	for _, h := range kept {
		kv[l.KVHead(h)] = true
	}
	H, d := int64(c.Hidden), int64(c.HeadDim)
	q, nkv := int64(len(kept))*d, int64(len(kv))*d
	n := 2*H*q + 2*H*nkv
	if l.Bq != nil {
		n += q
	}
	if l.Bk != nil {
		n += nkv
	}
	if l.Bv != nil {
		n += nkv
	}
	if l.Bo != nil {
		n += H
	}
	return n
}

// mlpParams counts the MLP weights and biases left with `kept` neurons.
func mlpParams(c model.Config, l *model.Layer, kept int) int64 {
	if kept == 0 {
		return 0
	}
	H, k := int64(c.Hidden), int64(kept)
	n := 3 * H * k
	if l.Bgate != nil {
		n += k
	}
	if l.Bup != nil {
		n += k
	}
	if l.Bdown != nil {
		n += H
	}
	return n
}

func writeLevel(dir, rel string, w []float32, rows, cols int) error {
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return safetensors.WriteFile(path, []safetensors.Tensor{{Name: "weight", DType: safetensors.F32, Shape: []int64{int64(rows), int64(cols)}, Data: w}}, nil)
}

func fileInfo(dir, rel string, info *LevelInfo) error {
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	info.File, info.Bytes, info.SHA256 = filepath.ToSlash(rel), n, hex.EncodeToString(h.Sum(nil))
	return nil
}

// runLayer applies layer li of the resident model to the hidden states x
// in place (on a host device x itself is the device buffer; otherwise it is
// uploaded and downloaded), reporting activations to sink.
func runLayer(dev backend.Device[float32], rd *model.Resident, ar *model.Arena[float32], li int, x []float32, lens []int, sink hessianSink) error {
	xv, err := dev.Resident(x)
	if err != nil {
		return err
	}
	err = rd.RunLayer(ar, li, xv, lens, sink)
	if err == nil {
		err = sink.err()
	}
	if _, ok := dev.Host(xv); ok {
		return err
	}
	if err == nil {
		err = dev.Download(x, xv)
	}
	dev.Free(xv)
	return err
}

// hessianSink routes o_proj inputs to hs[0] and down_proj inputs to hs[1].
type hessianSink struct {
	hs [2]*hessian
}

func (s hessianSink) DeviceActivation(dev backend.Device[float32], layer int, kind model.ActKind, x backend.View, rows, cols int) {
	switch kind {
	case model.OProjInput:
		s.hs[0].add(dev, x, rows, cols)
	case model.DownProjInput:
		s.hs[1].add(dev, x, rows, cols)
	}
}

// err returns the first error of either Hessian.
func (s hessianSink) err() error {
	return errors.Join(s.hs[0].err, s.hs[1].err)
}

// hessian accumulates XᵀX in float64 across batches; each chunk's product
// is formed by the device's Syrk in float32 first (on the CPU the backend's
// SyrkTN into a host slice, as before the device interface).
type hessian struct {
	n       int
	acc     []float64
	dev     backend.Device[float32]
	scratch backend.View // n×n on the device
	host    []float32    // its host copy when the device is not the host
	err     error
}

func newHessian(dev backend.Device[float32], n int) (*hessian, error) {
	v, err := dev.Alloc(n * n)
	if err != nil {
		return nil, fmt.Errorf("Hessian of %d×%d: %w", n, n, err)
	}
	return &hessian{n: n, acc: make([]float64, n*n), dev: dev, scratch: v}, nil
}

func (h *hessian) add(dev backend.Device[float32], x backend.View, rows, cols int) {
	if h.err != nil {
		return
	}
	if cols != h.n {
		h.err = fmt.Errorf("prune: activation width %d, Hessian %d", cols, h.n)
		return
	}
	// Chunks of rows keep float32 sums short before they reach float64.
	const chunk = 512
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(rows, r0+chunk)
		dev.Zero(h.scratch)
		dev.Syrk(h.scratch, x.Rows(r0, r1, cols), cols, r1-r0)
		hs, ok := dev.Host(h.scratch)
		if !ok {
			if h.host == nil {
				h.host = make([]float32, h.n*h.n)
			}
			if h.err = dev.Download(h.host, h.scratch); h.err != nil {
				return
			}
			hs = h.host
		}
		for i, v := range hs {
			h.acc[i] += float64(v)
		}
	}
}

// finish returns scale·Σ XᵀX and releases the scratch.
func (h *hessian) finish(scale float64) []float64 {
	for i := range h.acc {
		h.acc[i] *= scale
	}
	h.dev.Free(h.scratch)
	h.scratch, h.host = backend.View{}, nil
	return h.acc
}

// hiddenStore keeps the residual stream of every calibration batch between
// layers: in memory, or, above the memory limit, in one temporary file with
// a fixed region per batch (read, run the layer, write back in place).
type hiddenStore struct {
	rows    []int
	off     []int64
	hidden  int
	mem     [][]float32
	f       *os.File
	scratch []float32
}

func newHiddenStore(dir string, batches [][][]int, hidden int, memLimit int64) (*hiddenStore, error) {
	s := &hiddenStore{hidden: hidden}
	total := int64(0)
	maxRows := 0
	for _, b := range batches {
		r := 0
		for _, q := range b {
			r += len(q)
		}
		s.rows = append(s.rows, r)
		s.off = append(s.off, total)
		total += int64(r) * int64(hidden) * 4
		maxRows = max(maxRows, r)
	}
	if total <= memLimit {
		s.mem = make([][]float32, len(batches))
		for i, r := range s.rows {
			s.mem[i] = make([]float32, r*hidden)
		}
		return s, nil
	}
	f, err := os.CreateTemp(dir, "hidden-*.bin")
	if err != nil {
		return nil, fmt.Errorf("database: spill file: %w", err)
	}
	s.f = f
	s.scratch = make([]float32, maxRows*hidden)
	return s, nil
}

// buf returns a buffer for batch b (to be filled and put).
func (s *hiddenStore) buf(b int) []float32 {
	if s.mem != nil {
		return s.mem[b]
	}
	return s.scratch[:s.rows[b]*s.hidden]
}

func (s *hiddenStore) get(b int) ([]float32, error) {
	if s.mem != nil {
		return s.mem[b], nil
	}
	x := s.buf(b)
	if _, err := s.f.ReadAt(f32bytes(x), s.off[b]); err != nil {
		return nil, fmt.Errorf("database: spill file: %w", err)
	}
	return x, nil
}

func (s *hiddenStore) put(b int, x []float32) error {
	if s.mem != nil {
		return nil
	}
	if _, err := s.f.WriteAt(f32bytes(x), s.off[b]); err != nil {
		return fmt.Errorf("database: spill file: %w", err)
	}
	return nil
}

func (s *hiddenStore) close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
		s.f = nil
	}
	s.mem = nil
}

// f32bytes views float32s as their in-memory (little-endian) bytes.
func f32bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}
