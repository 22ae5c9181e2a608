// Package shear is the Sheared-LLaMA baseline (Xia et al., "Sheared LLaMA:
// Accelerating Language Model Pre-training via Structured Pruning"), as
// princeton-nlp/LLM-Shearing implements its pruning stage: hard-concrete
// (L0) gates over whole layers, attention heads (per layer), MLP neurons
// (per layer) and the hidden dimension (shared by all layers), trained
// jointly with the weights under Lagrangian constraints that pull the
// expected shape to a target shape; at the end the gates are made
// deterministic, exactly the target's numbers of units are kept, their soft
// gate values are folded into the weights and the model is physically
// shrunk.
package shear

import "math"

// Hard-concrete constants of LLM-Shearing's l0_module.py: stretch limits
// (γ, ζ), temperature β, the clamping ε of u and of the CDF, the clamp of
// log α after each step, and the "magical number" of the deterministic
// gates.
const (
	limitA      = -0.1
	limitB      = 1.1
	temperature = 2.0 / 3.0
	epsilon     = 1e-6
	magical     = 0.8
)

var (
	logAlphaMin = math.Log(1e-2)
	logAlphaMax = math.Log(1e2)
	// logitZero is logit(−γ/(ζ−γ)) = log(−γ/ζ): the point where the
	// stretched variable crosses 0.
	logitZero = math.Log(-limitA / limitB)
)

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// SampleGate draws a training gate z = clip(s·(ζ−γ)+γ, 0, 1) with
// s = σ((log u − log(1−u) + log α)/β), u clamped to [ε, 1−ε], and returns
// dz/dlog α (0 where the clip is active, as torch's hardtanh).
func SampleGate(logAlpha, u float64) (z, dz float64) {
	u = min(max(u, epsilon), 1-epsilon)
	s := sigmoid((math.Log(u) - math.Log(1-u) + logAlpha) / temperature)
	y := s*(limitB-limitA) + limitA
	switch {
	case y <= 0:
		return 0, 0
	case y >= 1:
		return 1, 0
	}
	return y, (limitB - limitA) * s * (1 - s) / temperature
}

// ExpectedScore is P(z ≠ 0) = 1 − Q(0), Q(0) = σ(β·log(−γ/ζ) − log α)
// clamped to [ε, 1−ε] as the reference's cdf_qz, and its derivative with
// respect to log α.
func ExpectedScore(logAlpha float64) (p, dp float64) {
	q := sigmoid(logitZero*temperature - logAlpha)
	if q <= epsilon || q >= 1-epsilon {
		return 1 - min(max(q, epsilon), 1-epsilon), 0
	}
	return 1 - q, q * (1 - q)
}

// softGate is the value a kept unit's deterministic gate takes:
// σ(log α/β · 0.8) (LLM-Shearing's _deterministic_z).
func softGate(logAlpha float64) float64 { return sigmoid(logAlpha / temperature * magical) }
