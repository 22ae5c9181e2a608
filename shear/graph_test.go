package shear

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
	"github.com/darwinlm/darwinlm-go/train"
)

var gradCases = []modeltest.Cfg{
	{Heads: 4, KV: 2, HD: 4, Hidden: 12, Inter: 10, Vocab: 17, Layers: 2},                              // GQA, untied
	{Heads: 3, KV: 3, HD: 4, Hidden: 8, Inter: 7, Vocab: 13, Layers: 3, Tied: true, Interleaved: true}, // MHA, tied
	{Heads: 4, KV: 2, HD: 2, Hidden: 10, Inter: 6, Vocab: 11, Layers: 2, Bias: true, MLPBias: true},    // all biases, hidden ≠ heads·d
}

var gradSeqs = [][]int{{1, 5, 7, 3, 9, 2, 10, 4}, {3, 2, 3}, {0, 6, 7, 1, 3}}

func cpuBackend(t testing.TB) backend.Backend {
	be, err := backend.Get("auto")
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// maskedLoss is the cross-entropy of the masked model (float64), with the
// gradients into gw, gz when they are not nil.
func maskedLoss(w *train.Weights[float64], z *Gates[float64], gw *train.Weights[float64], gz *Gates[float64]) float64 {
	g := &graph[float64]{w: w, z: z}
	logits := g.forward(gradSeqs)
	var dl []float64
	if gw != nil {
		dl = make([]float64, len(logits))
	}
	loss := train.CrossEntropy(dl, logits, gradSeqs, w.Cfg.Vocab, 1)
	if gw != nil {
		g.backward(dl, gw, gz)
	}
	return loss
}

func randomGates(s Shape, r *rand.Rand, zeros bool) *Gates[float64] {
	z := NewGates[float64](s, 0)
	for _, k := range z.all() {
		for i := range k {
			k[i] = 0.2 + 0.8*r.Float64()
		}
	}
	if zeros { // a removed head, neuron and hidden unit
		z.Head[1], z.Neuron[2], z.Hidden[3] = 0, 0, 0
	}
	return z
}

func relErr(a, b float64) float64 { return math.Abs(a-b) / max(math.Abs(a)+math.Abs(b), 1e-3) }

// TestGateGradientsFiniteDifference checks ∂CE/∂z for every gate and a
// sample of weights against float64 central differences.
func TestGateGradientsFiniteDifference(t *testing.T) {
	for ci, rc := range gradCases {
		for _, zeros := range []bool{false, true} {
			m := modeltest.Random(rc, false, uint64(ci+1))
			s, err := BaseShape(m)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(ci), 3))
			w := train.Convert[float64](train.FromModel(m))
			z := randomGates(s, r, zeros)
			gw, gz := train.ZeroLike(w), NewGates[float64](s, 0)
			maskedLoss(w, z, gw, gz)
			const h = 1e-6
			worst := 0.0
			names := [4]string{"layer", "head", "neuron", "hidden"}
			for k, gates := range z.all() {
				for i := range gates {
					if k == 3 && gates[i] == 0 {
						continue // a hidden gate at 0 changes the norm's unit count: not differentiable
					}
					v := gates[i]
					gates[i] = v + h
					lp := maskedLoss(w, z, nil, nil)
					gates[i] = v - h
					lm := maskedLoss(w, z, nil, nil)
					gates[i] = v
					fd := (lp - lm) / (2 * h)
					an := gz.all()[k][i]
					if e := relErr(an, fd); e > 1e-5 {
						t.Errorf("case %d zeros=%v: %s gate %d: analytic %.10g, finite difference %.10g", ci, zeros, names[k], i, an, fd)
					} else {
						worst = max(worst, e)
					}
				}
			}
			params, grads := w.Tensors(), gw.Tensors()
			for pi, p := range params {
				for n := 0; n < 6; n++ {
					i := r.IntN(len(p.Data))
					v := p.Data[i]
					p.Data[i] = v + h
					lp := maskedLoss(w, z, nil, nil)
					p.Data[i] = v - h
					lm := maskedLoss(w, z, nil, nil)
					p.Data[i] = v
					fd := (lp - lm) / (2 * h)
					if e := relErr(grads[pi].Data[i], fd); e > 1e-5 {
						t.Errorf("case %d zeros=%v: %s[%d]: analytic %.10g, finite difference %.10g", ci, zeros, p.Name, i, grads[pi].Data[i], fd)
					} else {
						worst = max(worst, e)
					}
				}
			}
			t.Logf("case %d zeros=%v: worst relative error %.2g", ci, zeros, worst)
		}
	}
}

// TestOpenGatesMatchModelForward: with every gate 1 the masked float32
// forward is bitwise the inference forward.
func TestOpenGatesMatchModelForward(t *testing.T) {
	be := cpuBackend(t)
	for ci, rc := range gradCases {
		m := modeltest.Random(rc, false, uint64(ci+1))
		s, _ := BaseShape(m)
		g := &graph[float32]{be: be, w: train.FromModel(m), z: NewGates[float32](s, 1)}
		got := g.forward(gradSeqs)
		want := m.Forward(be, gradSeqs)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("case %d: logit %d: masked %v, model.Forward %v", ci, i, got[i], want[i])
			}
		}
	}
}

// TestLagrangianFiniteDifference checks ∂L/∂log α and ∂L/∂λ.
func TestLagrangianFiniteDifference(t *testing.T) {
	base := Shape{Layers: 3, Hidden: 10, Heads: 4, KVHeads: 2, Inter: 7}
	target := Shape{Layers: 2, Hidden: 6, Heads: 3, KVHeads: 2, Inter: 4}
	r := rand.New(rand.NewPCG(5, 5))
	la := NewGates[float64](base, 0)
	for _, k := range la.all() {
		for i := range k {
			k[i] = -4 + 8*r.Float64()
		}
	}
	var lam [4][2]float64
	for k := range lam {
		lam[k] = [2]float64{r.NormFloat64(), r.NormFloat64()}
	}
	const frac, h = 0.7, 1e-6
	gl := NewGates[float64](base, 0)
	_, dlam := Lagrangian(base, target, la, lam, frac, gl)
	loss := func() float64 { l, _ := Lagrangian(base, target, la, lam, frac, NewGates[float64](base, 0)); return l }
	for k, a := range la.all() {
		for i := range a {
			v := a[i]
			a[i] = v + h
			lp := loss()
			a[i] = v - h
			lm := loss()
			a[i] = v
			if fd := (lp - lm) / (2 * h); relErr(gl.all()[k][i], fd) > 1e-6 {
				t.Errorf("%s log α %d: analytic %.10g, finite difference %.10g", maskKinds[k], i, gl.all()[k][i], fd)
			}
		}
	}
	for k := range lam {
		for j := range 2 {
			v := lam[k][j]
			lam[k][j] = v + h
			lp := loss()
			lam[k][j] = v - h
			lm := loss()
			lam[k][j] = v
			if fd := (lp - lm) / (2 * h); relErr(dlam[k][j], fd) > 1e-6 {
				t.Errorf("%s λ%d: analytic %.10g, finite difference %.10g", maskKinds[k], j+1, dlam[k][j], fd)
			}
		}
	}
}

// TestSampleGateDerivative checks dz/dlog α of the sampler.
func TestSampleGateDerivative(t *testing.T) {
	const h = 1e-6
	for _, a := range []float64{-3, -1, 0, 0.5, 2, 4} {
		for _, u := range []float64{0.1, 0.3, 0.5, 0.7, 0.9} {
			z, dz := SampleGate(a, u)
			zp, _ := SampleGate(a+h, u)
			zm, _ := SampleGate(a-h, u)
			if z <= 0 || z >= 1 {
				if dz != 0 {
					t.Errorf("log α %g, u %g: clipped z %g has derivative %g", a, u, z, dz)
				}
				continue
			}
			if fd := (zp - zm) / (2 * h); relErr(dz, fd) > 1e-6 {
				t.Errorf("log α %g, u %g: dz %.10g, finite difference %.10g", a, u, dz, fd)
			}
		}
	}
}

// TestHardConcreteClosedForms compares the sampler's Monte Carlo mean and
// P(z ≠ 0) with their closed forms: P(z ≠ 0) = 1 − σ(β·log(−γ/ζ) − log α)
// and E[z] = ∫₀¹ P(z > t) dt with P(z > t) = 1 − σ(β·logit((t−γ)/(ζ−γ)) −
// log α) (the stretched binary-concrete CDF), integrated by Simpson's rule.
// Tolerances are 5 standard errors of N samples (σ ≤ ½ for both).
func TestHardConcreteClosedForms(t *testing.T) {
	const N = 200000
	tol := 5 * 0.5 / math.Sqrt(N)
	r := rand.New(rand.NewPCG(11, 12))
	for _, a := range []float64{-4, -1.5, 0, 1, 3} {
		var nz, sum float64
		for range N {
			z, _ := SampleGate(a, r.Float64())
			sum += z
			if z != 0 {
				nz++
			}
		}
		pClosed := 1 - 1/(1+math.Exp(-(2.0/3.0*math.Log(0.1/1.1)-a)))
		tail := func(x float64) float64 {
			s := (x + 0.1) / 1.2
			return 1 - 1/(1+math.Exp(-(2.0/3.0*math.Log(s/(1-s))-a)))
		}
		const n = 2000
		integral := tail(0) + tail(1)
		for i := 1; i < n; i++ {
			w := 2.0
			if i%2 == 1 {
				w = 4
			}
			integral += w * tail(float64(i)/n)
		}
		integral /= 3 * n
		if math.Abs(nz/N-pClosed) > tol {
			t.Errorf("log α %g: P(z≠0) sampled %.5f, closed form %.5f (tolerance %.4f)", a, nz/N, pClosed, tol)
		}
		if math.Abs(sum/N-integral) > tol {
			t.Errorf("log α %g: E[z] sampled %.5f, closed form %.5f (tolerance %.4f)", a, sum/N, integral, tol)
		}
		if p, _ := ExpectedScore(a); math.Abs(p-pClosed) > 1e-12 {
			t.Errorf("log α %g: ExpectedScore %.12f, closed form %.12f", a, p, pClosed)
		}
	}
}
