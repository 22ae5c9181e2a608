package nn

import "math"

// RopeScaling mirrors the llama3 rope_scaling block (Llama-3.1).
type RopeScaling struct {
	Factor, LowFreqFactor, HighFreqFactor float64
	OriginalMaxPos                        int
}

// Rope holds the cos/sin tables of rotary position embeddings for one head
// dimension. Interleaved selects llama2.c's pairing (2i, 2i+1); otherwise
// Hugging Face's rotate_half pairing (i, i+d/2) is used.
type Rope struct {
	HeadDim     int
	Interleaved bool
	invFreq     []float32
	cos, sin    []float32 // [pos][HeadDim/2], grown on demand
	maxPos      int
}

// NewRope builds the inverse frequencies as Hugging Face does (float32
// 1/theta^(2i/d)), with optional llama3 frequency scaling.
func NewRope(headDim int, theta float64, interleaved bool, sc *RopeScaling) *Rope {
	half := headDim / 2
	inv := make([]float32, half)
	for i := range inv {
		f := 1 / math.Pow(theta, float64(2*i)/float64(headDim))
		if sc != nil && sc.Factor > 0 {
			old := float64(sc.OriginalMaxPos)
			lowWave := old / sc.LowFreqFactor
			highWave := old / sc.HighFreqFactor
			wave := 2 * math.Pi / f
			switch {
			case wave < highWave:
			case wave > lowWave:
				f /= sc.Factor
			default:
				smooth := (old/wave - sc.LowFreqFactor) / (sc.HighFreqFactor - sc.LowFreqFactor)
				f = (1-smooth)*f/sc.Factor + smooth*f
			}
		}
		inv[i] = float32(f)
	}
	return &Rope{HeadDim: headDim, Interleaved: interleaved, invFreq: inv}
}

// HeadDimension is the rotated head dimension (backend.RopeTable).
func (r *Rope) HeadDimension() int { return r.HeadDim }

// IsInterleaved reports llama2.c's pairing (backend.RopeTable).
func (r *Rope) IsInterleaved() bool { return r.Interleaved }

// Positions is the number of positions the tables cover (see Ensure).
func (r *Rope) Positions() int { return r.maxPos }

// Table returns cos and sin for position pos (length HeadDim/2 each).
func (r *Rope) Table(pos int) (cos, sin []float32) {
	half := r.HeadDim / 2
	return r.cos[pos*half : pos*half+half], r.sin[pos*half : pos*half+half]
}

// Ensure grows the tables to cover positions [0, n). Not safe for
// concurrent use; call before parallel work.
func (r *Rope) Ensure(n int) {
	if n <= r.maxPos {
		return
	}
	half := r.HeadDim / 2
	c := make([]float32, n*half)
	s := make([]float32, n*half)
	for p := 0; p < n; p++ {
		for i, f := range r.invFreq {
			// The angle is a float32 product as in HF and llama2.c.
			a := float64(float32(p) * f)
			c[p*half+i] = float32(math.Cos(a))
			s[p*half+i] = float32(math.Sin(a))
		}
	}
	r.cos, r.sin, r.maxPos = c, s, n
}

// Forward rotates x in place: x is [T × nHeads × HeadDim], and row t has
// position pos0+t. Call Ensure(pos0+T) first.
func (r *Rope) Forward(x []float32, T, nHeads, pos0 int) {
	ropeApplyT(r, x, T, nHeads, pos0, 1)
}

// Backward applies the inverse rotation to the gradient in place.
func (r *Rope) Backward(dx []float32, T, nHeads, pos0 int) {
	ropeApplyT(r, dx, T, nHeads, pos0, -1)
}
