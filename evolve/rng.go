package evolve

import (
	"math/bits"
	"math/rand/v2"
)

// Random numbers. The reference draws offspring and minibatches from one
// Python `random` stream seeded 0, so a resumed run could only continue it by
// replaying every draw. Here every piece of randomness comes from its own
// stream, derived from the run's seed and the place where it is used:
//
//	stream(purpose, generation, stage) = PCG-DXSM (math/rand/v2.NewPCG) with
//	    seed1 = uint64(seed)
//	    seed2 = splitmix64(purpose<<56 ^ uint64(generation+1)<<16 ^ uint64(stage))
//
// purpose is streamOffspring (the mutations of one generation), streamStage
// (the training and fitness minibatches of one stage: training first, then
// fitness) or streamInit (the random initial configurations of a
// non-integer target level, generation −1). A generation therefore depends
// only on the seed and on the parent it starts from, which is what makes
// --resume reproduce an uninterrupted run exactly. Bounded integers are
// drawn with Lemire's multiply-and-reject method from the 64-bit outputs
// (unbiased; independent of math/rand's own helpers, which Go may change).
const (
	streamOffspring = 1
	streamStage     = 2
	streamInit      = 3
)

// rng is one random stream.
type rng struct{ p *rand.PCG }

func newStream(seed int64, purpose uint64, generation, stage int) *rng {
	s2 := splitmix64(purpose<<56 ^ uint64(int64(generation)+1)<<16 ^ uint64(stage))
	return &rng{rand.NewPCG(uint64(seed), s2)}
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// intn returns a uniform integer in [0, n), n > 0.
func (r *rng) intn(n int) int {
	if n <= 0 {
		panic("evolve: intn of a non-positive bound")
	}
	bound := uint64(n)
	hi, lo := bits.Mul64(r.p.Uint64(), bound)
	if lo < bound {
		thresh := -bound % bound
		for lo < thresh {
			hi, lo = bits.Mul64(r.p.Uint64(), bound)
		}
	}
	return int(hi)
}

// between returns a uniform integer in [a, b] (Python's random.randint).
func (r *rng) between(a, b int) int { return a + r.intn(b-a+1) }
