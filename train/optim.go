package train

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/nn"
)

// Optimizer updates parameters from gradients. Parameters and gradients are
// passed as parallel lists (Weights.Tensors order). Updates are element-wise
// (no reductions), so they do not depend on how the work is split.
type Optimizer interface {
	Name() string
	Step(params, grads []Tensor[float32], lr float64)
	// State returns the optimizer's tensors (for checkpoints) by name; the
	// slices are live, so loading a checkpoint copies into them.
	State(params []Tensor[float32]) []Tensor[float32]
	// Steps is the number of updates done (AdamW's bias-correction counter).
	Steps() int
	SetSteps(n int)
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter; torch.optim.
// AdamW): w ← w·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
// w ← w − lr·m̂/(√v̂ + eps) with m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ). The update is
// one fused float32 pass per tensor in torch's operation order (nn.AdamW; an
// AVX kernel gives bitwise the same), moments stored in float32. Weight
// decay applies to every parameter (as in the reference's fine-tuning,
// where torch's AdamW decays all of them).
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	t                              int
	m, v                           [][]float32
}

// NewAdamW returns AdamW with the given settings.
func NewAdamW(beta1, beta2, eps, wd float64) *AdamW {
	return &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: wd}
}

func (o *AdamW) Name() string { return "adamw" }

func (o *AdamW) alloc(params []Tensor[float32]) {
	if o.m != nil {
		return
	}
	for _, p := range params {
		o.m = append(o.m, make([]float32, len(p.Data)))
		o.v = append(o.v, make([]float32, len(p.Data)))
	}
}

func (o *AdamW) Step(params, grads []Tensor[float32], lr float64) { o.step(params, grads, lr) }

// step does one update and reports whether every gradient was finite.
func (o *AdamW) step(params, grads []Tensor[float32], lr float64) bool {
	o.alloc(params)
	o.t++
	c := o.stepConsts(lr)
	ok := true
	for pi, p := range params {
		ok = nn.AdamW(p.Data, grads[pi].Data, o.m[pi], o.v[pi], &c) && ok
	}
	return ok
}

// stepConsts returns the scalars of update o.t at learning rate lr, rounded
// to float32 once per step as the fused kernel uses them.
func (o *AdamW) stepConsts(lr float64) backend.AdamWStep {
	return backend.AdamWStep{
		Decay: float32(1 - lr*o.WeightDecay),
		B1:    float32(o.Beta1), C1: float32(1 - o.Beta1),
		B2: float32(o.Beta2), C2: float32(1 - o.Beta2),
		BC2s:   float32(math.Sqrt(1 - math.Pow(o.Beta2, float64(o.t)))),
		Eps:    float32(o.Eps),
		NegLR1: float32(-lr / (1 - math.Pow(o.Beta1, float64(o.t)))),
	}
}

func (o *AdamW) State(params []Tensor[float32]) []Tensor[float32] {
	o.alloc(params)
	var out []Tensor[float32]
	for i, p := range params {
		out = append(out, Tensor[float32]{"adamw.m." + p.Name, o.m[i]}, Tensor[float32]{"adamw.v." + p.Name, o.v[i]})
	}
	return out
}

func (o *AdamW) Steps() int     { return o.t }
func (o *AdamW) SetSteps(n int) { o.t = n }

// SGD is plain stochastic gradient descent with (coupled, torch-style)
// weight decay: w ← w − lr·(g + wd·w). It has no state.
type SGD struct {
	WeightDecay float64
	t           int
}

func (o *SGD) Name() string { return "sgd" }

func (o *SGD) Step(params, grads []Tensor[float32], lr float64) {
	o.t++
	for pi, p := range params {
		w, g := p.Data, grads[pi].Data
		parallel(len(w), func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				wi := float64(w[i])
				w[i] = float32(wi - lr*(float64(g[i])+o.WeightDecay*wi))
			}
		})
	}
}

func (o *SGD) State([]Tensor[float32]) []Tensor[float32] { return nil }
func (o *SGD) Steps() int                                { return o.t }
func (o *SGD) SetSteps(n int)                            { o.t = n }

// GradNorm is the global L2 norm of the gradients, accumulated in float64 in
// tensor order (deterministic).
func GradNorm(grads []Tensor[float32]) float64 {
	var s float64
	for _, g := range grads {
		for _, v := range g.Data {
			s += float64(v) * float64(v)
		}
	}
	return math.Sqrt(s)
}

// ClipGrads scales the gradients by maxNorm/(norm+1e-6) when that is below 1
// (torch.nn.utils.clip_grad_norm_) and returns the norm before clipping.
// maxNorm ≤ 0 disables clipping.
func ClipGrads(grads []Tensor[float32], maxNorm float64) float64 {
	norm := GradNorm(grads)
	if maxNorm <= 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	coef := maxNorm / (norm + 1e-6)
	if coef >= 1 {
		return norm
	}
	c := float32(coef)
	for _, g := range grads {
		for i := range g.Data {
			g.Data[i] *= c
		}
	}
	return norm
}

// Schedule gives the learning rate of step s (0-based) of total steps.
type Schedule struct {
	Kind   string  // "constant", "cosine" or "linear"
	LR     float64 // peak learning rate
	Warmup int     // linear warm-up steps: lr·(s+1)/Warmup (no zero-lr step)
	MinLR  float64 // floor of the decay (cosine / linear end value)
	Total  int
}

// Validate checks the schedule's kind.
func (s Schedule) Validate() error {
	switch s.Kind {
	case "constant", "cosine", "linear":
		return nil
	}
	return fmt.Errorf("unknown schedule %q (want constant, cosine or linear)", s.Kind)
}

// At returns the learning rate of step s.
func (s Schedule) At(step int) float64 {
	if step < s.Warmup {
		return s.LR * float64(step+1) / float64(s.Warmup)
	}
	if s.Kind == "constant" {
		return s.LR
	}
	n := s.Total - s.Warmup
	if n <= 0 {
		return s.LR
	}
	// Progress as in Hugging Face's schedulers: (s − warmup)/(total − warmup).
	p := math.Min(1, float64(step-s.Warmup)/float64(n))
	switch s.Kind {
	case "cosine":
		return s.MinLR + 0.5*(s.LR-s.MinLR)*(1+math.Cos(math.Pi*p))
	case "linear":
		return s.LR + (s.MinLR-s.LR)*p
	}
	return s.LR
}

func parallel(n int, f func(i0, i1 int)) {
	const chunk = 1 << 15
	if n <= chunk {
		f(0, n)
		return
	}
	nc := (n + chunk - 1) / chunk
	nn.ParallelFor(nc, func(c int) { f(c*chunk, min(n, (c+1)*chunk)) })
}
