package shear

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/train"
)

// Config configures a pruning run. Zero values take the defaults noted.
type Config struct {
	Model   *model.Model // dense model; not modified
	Backend backend.Backend
	Target  Shape
	// Tokens is the training stream, packed into Steps batches of Batch
	// sequences of SeqLen tokens (train.Loader, order from Seed).
	Tokens        []int
	SeqLen, Batch int
	Steps         int
	// LR is the weights' peak learning rate (reference 1e-4); LagLR that of
	// the gates' log α and of the multipliers (reference 1.0, ascent for
	// the multipliers). Both follow one schedule: linear warm-up over
	// Warmup steps (reference 10%), then cosine to MinLRFrac of the peak
	// (reference alpha_f 0.1).
	LR, LagLR float64
	Warmup    int
	MinLRFrac float64 // default 0.1
	// TargetWarmup is the number of steps over which the target sparsity
	// grows linearly from 0 (reference 20% of the steps); 0 means Steps/5.
	TargetWarmup int
	Clip         float64 // global gradient-norm clipping (reference 1.0); ≤ 0 disables
	Beta1, Beta2 float64 // AdamW betas (reference 0.9, 0.95)
	Seed         uint64
	// LogPath, when set, receives the Parquet log (atomically rewritten
	// every LogEvery steps and at the end).
	LogPath  string
	LogEvery int
	// OnStep, when set, is called after every step (progress bars).
	OnStep func(LogRow)
}

// LogRow is one row of the pruning log.
type LogRow struct {
	Step     int64   `parquet:"step"`
	Tokens   int64   `parquet:"tokens"`
	Loss     float64 `parquet:"loss"`     // CE + Lagrangian
	CE       float64 `parquet:"ce"`       // masked model's cross-entropy (sampled gates)
	LagLoss  float64 `parquet:"lag_loss"` // Lagrangian term
	LR       float64 `parquet:"lr"`
	LagLR    float64 `parquet:"lag_lr"`
	GradNorm float64 `parquet:"grad_norm"`
	// Expected kept units (Σ P(z≠0), per layer averaged for heads and
	// neurons) and the warmed-up targets of this step.
	ExpLayers float64 `parquet:"expected_layers"`
	ExpHeads  float64 `parquet:"expected_heads"`
	ExpInter  float64 `parquet:"expected_intermediate"`
	ExpHidden float64 `parquet:"expected_hidden"`
	TgtLayers float64 `parquet:"target_layers"`
	TgtHeads  float64 `parquet:"target_heads"`
	TgtInter  float64 `parquet:"target_intermediate"`
	TgtHidden float64 `parquet:"target_hidden"`
	// Gap is the largest relative distance |expected − target|/target of
	// the four kinds (heads and neurons averaged over the layers) to the
	// final target; WorstGap the same over single rows (one layer's heads).
	Gap      float64 `parquet:"relative_gap"`
	WorstGap float64 `parquet:"worst_row_relative_gap"`
	// The multipliers λ1, λ2 of each kind.
	L1Layers   float64 `parquet:"lambda1_layer"`
	L2Layers   float64 `parquet:"lambda2_layer"`
	L1Heads    float64 `parquet:"lambda1_head"`
	L2Heads    float64 `parquet:"lambda2_head"`
	L1Inter    float64 `parquet:"lambda1_intermediate"`
	L2Inter    float64 `parquet:"lambda2_intermediate"`
	L1Hidden   float64 `parquet:"lambda1_hidden"`
	L2Hidden   float64 `parquet:"lambda2_hidden"`
	TokensPerS float64 `parquet:"tokens_per_s"`
}

// Report describes a finished run.
type Report struct {
	Base, Target Shape
	// KVHeads per layer of the result (GQA keeps the K/V heads its
	// surviving query heads read).
	KVHeads                                []int
	DenseParams, TargetParams, FinalParams int64
	Steps                                  int
	Tokens                                 int64
	Seconds                                float64
	FinalCE                                float64
	FinalExpected                          [4]float64 // layers, heads, intermediate, hidden
	FinalGap, FinalWorstGap                float64
	// WithinStep is the first step after which the expected shape stayed
	// within 1% of the target (LogRow.Gap ≤ 0.01) to the end; −1 if it
	// never did.
	WithinStep             int
	KeptLayers, KeptHidden []int
	Log                    []LogRow `json:"-"`
}

// Validate checks a configuration before any compute.
func (c *Config) Validate() (Shape, error) {
	if c.Model == nil {
		return Shape{}, fmt.Errorf("shear: no model")
	}
	base, err := BaseShape(c.Model)
	if err != nil {
		return Shape{}, err
	}
	if err := c.Target.Check(base, c.Model.Cfg.HeadDim, "target"); err != nil {
		return Shape{}, err
	}
	switch {
	case c.Backend == nil:
		return Shape{}, fmt.Errorf("shear: no backend")
	case c.Steps <= 0:
		return Shape{}, fmt.Errorf("shear: %d steps; need at least one", c.Steps)
	case c.LR <= 0 || c.LagLR <= 0:
		return Shape{}, fmt.Errorf("shear: learning rates must be positive (lr %g, lag lr %g)", c.LR, c.LagLR)
	case c.Warmup < 0 || c.TargetWarmup < 0 || c.TargetWarmup > c.Steps:
		return Shape{}, fmt.Errorf("shear: warm-ups must be in [0, steps] (lr warm-up %d, target warm-up %d, %d steps)", c.Warmup, c.TargetWarmup, c.Steps)
	case c.Model.Cfg.MaxSeq > 0 && c.SeqLen > c.Model.Cfg.MaxSeq:
		return Shape{}, fmt.Errorf("shear: sequence length %d exceeds the model's context of %d", c.SeqLen, c.Model.Cfg.MaxSeq)
	}
	if _, err := train.NewLoader(c.Tokens, c.SeqLen, c.Batch, c.Seed); err != nil {
		return Shape{}, fmt.Errorf("shear: %w", err)
	}
	return base, nil
}

// Prune runs the Sheared-LLaMA pruning stage on a copy of cfg.Model and
// returns the shrunk model of exactly the target shape. It is
// deterministic for a given configuration on the CPU backend.
func Prune(ctx context.Context, cfg Config) (*model.Model, *Report, error) {
	base, err := cfg.Validate()
	if err != nil {
		return nil, nil, err
	}
	if cfg.TargetWarmup == 0 {
		cfg.TargetWarmup = max(1, cfg.Steps/5)
	}
	if cfg.MinLRFrac == 0 {
		cfg.MinLRFrac = 0.1
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.95
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 50
	}
	if cfg.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogPath), 0o755); err != nil {
			return nil, nil, err
		}
	}
	ld, _ := train.NewLoader(cfg.Tokens, cfg.SeqLen, cfg.Batch, cfg.Seed)

	// The weights train on a copy; gates and multipliers are float32
	// tensors for the optimizer and float64 for the gate arithmetic.
	w := train.Convert[float32](train.FromModel(cfg.Model))
	gw := train.ZeroLike(w)
	params, grads := w.Tensors(), gw.Tensors()
	la32 := NewGates[float32](base, 0)
	init := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	for _, k := range la32.all() {
		for i := range k { // N(5, 0.01): every gate starts open
			k[i] = float32(5 + 0.01*init.NormFloat64())
		}
	}
	gla32 := NewGates[float32](base, 0)
	lam32, glam32 := make([]float32, 8), make([]float32, 8)
	tensors := func(g *Gates[float32]) []train.Tensor[float32] {
		var ts []train.Tensor[float32]
		for k, d := range kinds(g) {
			ts = append(ts, train.Tensor[float32]{Name: maskKinds[k], Data: d})
		}
		return ts
	}
	gateT, gateG := tensors(la32), tensors(gla32)
	lamT := []train.Tensor[float32]{{Name: "lambda", Data: lam32}}
	lamG := []train.Tensor[float32]{{Name: "lambda", Data: glam32}}
	optW := train.NewAdamW(cfg.Beta1, cfg.Beta2, 1e-8, 0)
	optG := train.NewAdamW(cfg.Beta1, cfg.Beta2, 1e-8, 0)
	optL := train.NewAdamW(cfg.Beta1, cfg.Beta2, 1e-8, 0)
	sched := train.Schedule{Kind: "cosine", LR: 1, Warmup: cfg.Warmup, MinLR: cfg.MinLRFrac, Total: cfg.Steps}

	la := NewGates[float64](base, 0)
	z, dz := NewGates[float64](base, 0), NewGates[float64](base, 0)
	z32, gz32 := NewGates[float32](base, 0), NewGates[float32](base, 0)
	gl := NewGates[float64](base, 0)
	toF64 := func(dst *Gates[float64], src *Gates[float32]) {
		d, s := dst.all(), src.all()
		for k := range d {
			for i, v := range s[k] {
				d[k][i] = float64(v)
			}
		}
	}
	rep := &Report{Base: base, Target: cfg.Target, DenseParams: Params(cfg.Model.Cfg, base),
		TargetParams: Params(cfg.Model.Cfg, cfg.Target), WithinStep: -1}
	tc := targetCounts(cfg.Target)
	rs := rowsOf(base)
	start := time.Now()
	var tokens int64
	for step := 0; step < cfg.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		seqs := ld.Next()
		for _, s := range seqs {
			tokens += int64(len(s))
		}
		toF64(la, la32)
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(step)+1))
		sampleGates(la, rng, z, dz)
		for k, zk := range z.all() {
			for i, v := range zk {
				z32.all()[k][i] = float32(v)
			}
		}
		gw.Zero()
		for _, k := range gz32.all() {
			clear(k)
		}
		g := &graph[float32]{be: cfg.Backend, w: w, z: z32}
		logits := g.forward(seqs)
		dl := make([]float32, len(logits))
		ce := train.CrossEntropy(dl, logits, seqs, w.Cfg.Vocab, 1)
		g.backward(dl, gw, gz32)

		// Gate gradients: ∂CE/∂z·dz/dlog α plus the Lagrangian's.
		frac := min(1, float64(step)/float64(cfg.TargetWarmup))
		for _, k := range gl.all() {
			clear(k)
		}
		var lam [4][2]float64
		for k := range lam {
			lam[k] = [2]float64{float64(lam32[2*k]), float64(lam32[2*k+1])}
		}
		lagLoss, dlam := Lagrangian(base, cfg.Target, la, lam, frac, gl)
		for k, gk := range gla32.all() {
			for i := range gk {
				gk[i] = float32(float64(gz32.all()[k][i])*dz.all()[k][i] + gl.all()[k][i])
			}
		}
		for k := range dlam { // ascent: the optimizer descends on −∂L/∂λ
			glam32[2*k], glam32[2*k+1] = float32(-dlam[k][0]), float32(-dlam[k][1])
		}
		loss := ce + lagLoss
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, nil, fmt.Errorf("shear: step %d: loss is %v", step+1, loss)
		}
		all := append(append(append([]train.Tensor[float32]{}, grads...), gateG...), lamG...)
		norm := train.ClipGrads(all, cfg.Clip)
		if math.IsNaN(norm) || math.IsInf(norm, 0) {
			return nil, nil, fmt.Errorf("shear: step %d: gradient norm is %v", step+1, norm)
		}
		f := sched.At(step)
		optW.Step(params, grads, cfg.LR*f)
		optG.Step(gateT, gateG, cfg.LagLR*f)
		optL.Step(lamT, lamG, cfg.LagLR*f)
		for _, k := range la32.all() { // LLM-Shearing's constrain_parameters
			for i, v := range k {
				k[i] = float32(min(max(float64(v), logAlphaMin), logAlphaMax))
			}
		}

		toF64(la, la32)
		exp, worst := ExpectedCounts(base, cfg.Target, la)
		gap := 0.0
		for k, e := range exp {
			gap = max(gap, abs(e-float64(tc[k]))/float64(tc[k]))
		}
		row := LogRow{Step: int64(step + 1), Tokens: tokens, Loss: loss, CE: ce, LagLoss: lagLoss,
			LR: cfg.LR * f, LagLR: cfg.LagLR * f, GradNorm: norm,
			ExpLayers: exp[0], ExpHeads: exp[1], ExpInter: exp[2], ExpHidden: exp[3], Gap: gap, WorstGap: worst,
			TokensPerS: float64(tokens) / max(time.Since(start).Seconds(), 1e-9)}
		tgt := [4]*float64{&row.TgtLayers, &row.TgtHeads, &row.TgtInter, &row.TgtHidden}
		for k := range tgt {
			size := float64(rs[k][1])
			*tgt[k] = size - frac*(size-float64(tc[k]))
		}
		for k, p := range []*float64{&row.L1Layers, &row.L2Layers, &row.L1Heads, &row.L2Heads, &row.L1Inter, &row.L2Inter, &row.L1Hidden, &row.L2Hidden} {
			*p = float64(lam32[k])
		}
		rep.Log = append(rep.Log, row)
		if gap <= 0.01 {
			if rep.WithinStep < 0 {
				rep.WithinStep = step + 1
			}
		} else {
			rep.WithinStep = -1
		}
		rep.FinalCE, rep.FinalExpected, rep.FinalGap, rep.FinalWorstGap = ce, exp, gap, worst
		if cfg.OnStep != nil {
			cfg.OnStep(row)
		}
		if cfg.LogPath != "" && (step+1)%cfg.LogEvery == 0 {
			if err := WriteLog(cfg.LogPath, rep.Log); err != nil {
				return nil, nil, err
			}
		}
	}
	rep.Steps, rep.Tokens, rep.Seconds = cfg.Steps, tokens, time.Since(start).Seconds()
	if cfg.LogPath != "" {
		if err := WriteLog(cfg.LogPath, rep.Log); err != nil {
			return nil, nil, err
		}
	}

	// Deterministic gates, folded into the trained weights, then shrink.
	toF64(la, la32)
	zd := DeterministicGates(base, cfg.Target, la)
	trained := weightsModel(cfg.Model, w)
	small, err := Shrink(trained, zd)
	if err != nil {
		return nil, nil, err
	}
	for i, v := range zd.Layer {
		if v != 0 {
			rep.KeptLayers = append(rep.KeptLayers, i)
		}
	}
	for i, v := range zd.Hidden {
		if v != 0 {
			rep.KeptHidden = append(rep.KeptHidden, i)
		}
	}
	for _, l := range small.Layers {
		rep.KVHeads = append(rep.KVHeads, l.KVHeads)
	}
	rep.FinalParams = small.NumParams()
	return small, rep, nil
}

// weightsModel is a model with m's config and the tensors of w.
func weightsModel(m *model.Model, w *train.Weights[float32]) *model.Model {
	out := &model.Model{Cfg: m.Cfg, Embed: w.Embed, Norm: w.Norm, LMHead: w.LMHead}
	for _, l := range w.Layers {
		out.Layers = append(out.Layers, model.Layer{Heads: l.Heads, KVHeads: l.KVHeads, Inter: l.Inter,
			AttnNorm: l.AttnNorm, Wq: l.Wq, Wk: l.Wk, Wv: l.Wv, Bq: l.Bq, Bk: l.Bk, Bv: l.Bv, Wo: l.Wo, Bo: l.Bo,
			MLPNorm: l.MLPNorm, Wgate: l.Wgate, Wup: l.Wup, Wdown: l.Wdown, Bgate: l.Bgate, Bup: l.Bup, Bdown: l.Bdown})
	}
	return out
}

// WriteLog writes the pruning log to path atomically (Parquet).
func WriteLog(path string, rows []LogRow) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := parquet.Write(f, rows); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}
