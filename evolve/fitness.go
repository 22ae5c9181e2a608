package evolve

import (
	"fmt"
	"math"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// Fitness functions (the reference's src/metrics.py), lower is better:
//
//	kl         token-mean KL(p_dense ‖ p_candidate) over the full vocabulary,
//	           against the dense logits cached once for the fitness pool; the
//	           last position of each sequence (also of a cut one) is dropped
//	sparse_kl  the same over the dense model's top-k logits (k = 10), both
//	           sides renormalised over those k
//	ppl        perplexity: exp of the token-mean next-token cross-entropy
//
// All accumulate in float64 (the reference runs in bfloat16).
const (
	FitnessKL       = "kl"
	FitnessSparseKL = "sparse_kl"
	FitnessPPL      = "ppl"
)

// CheckFitness validates a fitness name.
func CheckFitness(f string) error {
	switch f {
	case FitnessKL, FitnessSparseKL, FitnessPPL:
		return nil
	}
	return fmt.Errorf("--fitness %q: want kl, sparse_kl or ppl", f)
}

// chunkTokens bounds the rows of one forward pass during scoring (memory:
// rows × vocab logits).
const chunkTokens = 4096

// chunks groups consecutive sequences into forward passes of at most
// chunkTokens rows (a longer sequence gets a pass of its own).
func chunks(seqs [][]int) [][2]int {
	var out [][2]int
	for i := 0; i < len(seqs); {
		j, n := i, 0
		for j < len(seqs) && (j == i || n+len(seqs[j]) <= chunkTokens) {
			n += len(seqs[j])
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

// scorer computes a fitness of a model on sequences whose dense outputs are
// known (cache), or computed on the fly from dense (cache nil; kl and ppl).
type scorer struct {
	kind  string
	dense *model.Model
	cache *DenseCache // nil: run dense on the fly (held-out pool)
}

// scoreHost returns the fitness of m on seqs[i][:lens[i]] where seqs[i] is
// sequence ids[i] of the cached pool (ids may be nil without a cache). m
// (and the dense model when it runs alongside) is made resident on be's
// device for the call; a device error is returned.
func (s *scorer) scoreHost(be backend.Backend, m *model.Model, seqs [][]int, ids []int) (float64, error) {
	V := m.Cfg.Vocab
	dev := nn.DeviceFor(be)
	r, err := m.Upload(dev)
	if err != nil {
		return 0, err
	}
	defer r.Release()
	var rd *model.Resident
	if s.kind == FitnessKL && s.cache == nil {
		if rd, err = s.dense.Upload(dev); err != nil {
			return 0, fmt.Errorf("dense model: %w", err)
		}
		defer rd.Release()
	}
	return s.overChunks(seqs, ids, func(part [][]int, ids []int) (float64, error) {
		logits, err := r.Forward(part)
		if err != nil {
			return 0, err
		}
		switch s.kind {
		case FitnessPPL:
			return train.CrossEntropy(nil, logits, part, V, 1), nil
		case FitnessKL:
			var t []float32
			if s.cache != nil {
				t = s.cache.full(ids, part)
			} else if t, err = rd.Forward(part); err != nil {
				return 0, fmt.Errorf("dense model: %w", err)
			}
			return train.KL(nil, logits, t, part, V, 1), nil
		case FitnessSparseKL:
			// Only against the cache: held-out figures use kl and ppl.
			return train.SparseKLCached(nil, logits, s.cache.topK(ids, part), part, V, 1), nil
		}
		return 0, nil
	})
}

// overChunks runs mean on the chunks of seqs that predict something (with
// their ids; nil when ids is) and returns the fitness: the mean of the
// chunk means weighted by their positions (its exp for ppl), NaN without
// positions.
func (s *scorer) overChunks(seqs [][]int, ids []int, mean func(part [][]int, ids []int) (float64, error)) (float64, error) {
	var total float64
	pos := 0
	for _, c := range chunks(seqs) {
		part := seqs[c[0]:c[1]]
		n := train.Positions(part)
		if n == 0 {
			continue
		}
		var pid []int
		if ids != nil {
			pid = ids[c[0]:c[1]]
		}
		m, err := mean(part, pid)
		if err != nil {
			return 0, err
		}
		total += m * float64(n)
		pos += n
	}
	if pos == 0 {
		return math.NaN(), nil
	}
	f := total / float64(pos)
	if s.kind == FitnessPPL {
		return math.Exp(f), nil
	}
	return f, nil
}

// scoreResident is scoreHost on weights resident on a device (the candidate
// stays there from fine-tuning to scoring): each chunk's logits stay on
// the device and only the loss comes back. The losses are the host
// functions' own kernels on the CPU device (bitwise scoreHost's results). It
// needs the dense cache for kl and sparse_kl.
func (s *scorer) scoreResident(r *model.Resident, ar *model.Arena[float32], seqs [][]int, ids []int) (float64, error) {
	dev, V := r.Dev, r.Cfg.Vocab
	if s.kind != FitnessPPL && s.cache == nil {
		return 0, fmt.Errorf("evolve: fitness %s on a device needs the dense-logit cache", s.kind)
	}
	return s.overChunks(seqs, ids, func(part [][]int, ids []int) (float64, error) {
		mark := ar.Mark()
		z, _, err := r.ForwardView(ar, part)
		if err != nil {
			return 0, err
		}
		tg := train.RowTargets(part)
		var mean float64
		switch s.kind {
		case FitnessPPL:
			mean, err = dev.CrossEntropy(backend.View{}, z, tg, V, 1)
		case FitnessKL:
			var tv backend.View
			if tv, err = dev.Resident(s.cache.full(ids, part)); err == nil {
				mean, err = dev.KL(backend.View{}, z, tv, tg, V, 1)
				if _, ok := dev.Host(tv); !ok {
					dev.Free(tv)
				}
			}
		case FitnessSparseKL:
			t := s.cache.topK(ids, part)
			mean, err = dev.SparseKL(backend.View{}, z, t.Idx, t.Val, t.K, tg, V, 1)
		}
		ar.Release(mark)
		return mean, err
	})
}
