package backend

import (
	"errors"
	"fmt"
)

// The device-resident interface. Model, training, pruning and search code
// keeps its tensors in buffers owned by a Device and runs every operation of
// the forward pass, the backward pass, the losses, the optimizer and Hessian
// accumulation as a Device operation, so that a GPU keeps weights and
// activations resident and only token ids, losses and results cross the bus.
//
// On the CPU (nn.Host) a buffer is a Go slice and every operation is the
// same kernel the host code ran before, so the CPU results are unchanged
// bit for bit. A GPU device (backend/vulkan) records operations into
// command buffers and runs them at the next Sync (or when its batch is
// full); its results match the CPU within a stated tolerance.

// Float is the element type a Device computes in: float32 on every device,
// float64 on the host reference (gradient checks).
type Float interface{ ~float32 | ~float64 }

// Buf is a buffer owned by a device. Only the device that allocated it may
// use it.
type Buf interface {
	// Len is the number of elements.
	Len() int
}

// View is N elements of a buffer starting at element Off. The zero View
// means "absent" (an optional operand such as a bias or rstd).
type View struct {
	Buf    Buf
	Off, N int
}

// Nil reports whether v is absent.
func (v View) Nil() bool { return v.Buf == nil }

// Slice returns n elements of v from off (relative to v). An out-of-range
// slice is reported by the operation that uses it (see Check).
func (v View) Slice(off, n int) View { return View{v.Buf, v.Off + off, n} }

// Rows returns rows [r0, r1) of v seen as a row-major matrix with cols
// columns.
func (v View) Rows(r0, r1, cols int) View { return v.Slice(r0*cols, (r1-r0)*cols) }

// Check returns an error when v does not lie inside its buffer or holds
// fewer than n elements. Devices call it on every operand.
func (v View) Check(op, name string, n int) error {
	if v.Buf == nil {
		if n == 0 {
			return nil
		}
		return fmt.Errorf("%s: %s is absent, need %d elements", op, name, n)
	}
	if v.Off < 0 || v.N < 0 || v.Off+v.N > v.Buf.Len() {
		return fmt.Errorf("%s: %s [%d, %d) outside its buffer of %d elements", op, name, v.Off, v.Off+v.N, v.Buf.Len())
	}
	if v.N < n {
		return fmt.Errorf("%s: %s has %d elements, need %d", op, name, v.N, n)
	}
	return nil
}

// ErrNonFinite is returned by Device.Sync when AdamW met a gradient that is
// NaN or infinite (the step is still applied, as the host code did). Unlike
// other errors it does not skip later operations, so the remaining tensors
// of the step are updated too.
var ErrNonFinite = errors.New("a gradient is not finite")

// Seq is one run of rows of a packed batch: rows [Row, Row+T) hold the
// positions Pos … Pos+T−1 of one sequence.
type Seq struct{ Row, T, Pos int }

// AttnSeq is one sequence of an attention call.
type AttnSeq struct {
	Seq
	// K and V are the keys and values the sequence attends to, in position
	// order, Pos+T rows in all (e.g. a KV cache, or an ancestor chain of
	// shared-prefix segments followed by the sequence's own rows). Nil
	// means its own rows [Row, Row+T) of the k and v operands (then Pos
	// must be 0).
	K, V []View
	// Probs, when present, receives the attention probabilities
	// [nH × T × (Pos+T)] for the backward pass.
	Probs View
}

// Heads describes the attention heads: NH query heads of dimension D
// reading NKV key/value heads; KVMap[h] is the K/V head of query head h
// (nil: the standard grouping h / (NH/NKV)).
type Heads struct {
	NH, NKV, D int
	KVMap      []int
}

// RopeTable gives the cos/sin tables of rotary embeddings (nn.Rope).
type RopeTable interface {
	// HeadDimension is the rotated head dimension.
	HeadDimension() int
	// IsInterleaved selects llama2.c's pairing (2i, 2i+1); otherwise
	// Hugging Face's rotate_half pairing (i, i+d/2).
	IsInterleaved() bool
	// Table returns cos and sin of position pos (HeadDim/2 values each);
	// positions up to the longest sequence seen must be available.
	Table(pos int) (cos, sin []float32)
}

// AdamWStep holds the scalars of one AdamW update (train.AdamW computes
// them once per step, in float32 as the fused host kernel uses them):
// w = w·Decay + NegLR1·m̂/(sqrt(v)/BC2s + Eps) with m = B1·m + C1·g,
// v = B2·v + C2·g².
type AdamWStep struct {
	Decay, B1, C1, B2, C2, BC2s, Eps, NegLR1 float32
}

// Device runs the model's operations on buffers it owns. Operations are
// recorded in order and may run asynchronously; a View read by the host
// (Download) or a loss value reflects all operations issued before.
//
// Errors (bad shapes, views outside their buffers, device failures) are
// sticky: the first one is kept, later operations are skipped, and Sync
// (or the next Download or loss) returns it. Nothing panics.
//
// Accumulating operations say so ("+="); all others overwrite their
// outputs. Unless stated otherwise operands must not overlap.
type Device[F Float] interface {
	// Name is the device's name, e.g. "cpu-avx2" or "vulkan: NVIDIA H200".
	Name() string

	// Alloc returns a zeroed buffer of n elements.
	Alloc(n int) (View, error)
	// Free releases the buffer behind v (all views of it become invalid).
	Free(v View)
	// Upload copies src into dst (len(src) elements).
	Upload(dst View, src []F) error
	// Download copies src into dst (len(dst) elements) after every
	// operation issued before has run.
	Download(dst []F, src View) error
	// Resident returns a view holding host data for the device's lifetime
	// of the data: the host slice itself on a host device (no copy; writes
	// through the view change the slice), an uploaded copy on a GPU.
	Resident(host []F) (View, error)
	// Host returns the host slice behind v on a host device (no copy).
	Host(v View) ([]F, bool)
	// Sync waits for every operation issued so far and returns the first
	// error, which it clears.
	Sync() error

	// Zero sets v to 0; Copy copies src into dst (same length); Add adds
	// src into dst element-wise (dst += src).
	Zero(v View)
	Copy(dst, src View)
	Add(dst, src View)

	// MatNT: C[m×n] (+)= A[m×k]·B[n×k]ᵀ; MatNN: C (+)= A[m×k]·B[k×n];
	// MatTN: C[m×n] (+)= A[k×m]ᵀ·B[k×n]. acc selects +=.
	MatNT(c, a, b View, m, n, k int, acc bool)
	MatNN(c, a, b View, m, n, k int, acc bool)
	MatTN(c, a, b View, m, n, k int, acc bool)
	// Syrk: H[n×n] += X[k×n]ᵀ·X[k×n] (the full symmetric matrix). H must
	// be symmetric on entry: a device may update one triangle and mirror it
	// (the CPU backend's SyrkTN does).
	Syrk(h, x View, n, k int)

	// RMSNorm: out = x/rms(x)·w per row of dim values; rstd (may be
	// absent) receives 1/rms per row. out may equal x.
	RMSNorm(out, rstd, x, w View, rows, dim int, eps float64)
	// RMSNormBackward: dx += ∂/∂x, dw += ∂/∂w for upstream dout.
	RMSNormBackward(dx, dw, dout, x, w, rstd View, rows, dim int)
	// AddBias adds b [cols] to every row of x [rows × cols] (b may be
	// absent: no-op); AddBiasBackward: db += column sums of dout.
	AddBias(x, b View, rows int)
	AddBiasBackward(db, dout View, rows int)

	// Rope rotates x [rows × nHeads·D] in place at each sequence's
	// positions (inverse: the transposed rotation, the backward pass).
	Rope(x View, r RopeTable, seqs []Seq, nHeads int, inverse bool)
	// Attention: causal softmax(q·kᵀ/√D)·v per sequence into out [rows ×
	// NH·D] (q: [rows × NH·D], k and v: [rows × NKV·D]).
	Attention(out, q, k, v View, seqs []AttnSeq, h Heads)
	// AttentionBackward writes dq, dk, dv (same shapes as q, k, v) from
	// dout for sequences with their own keys (Pos 0); probabilities are
	// read from Probs when present, else recomputed bitwise.
	AttentionBackward(dq, dk, dv, dout, q, k, v View, seqs []AttnSeq, h Heads)

	// SiLUMul: out = silu(gate)·up (out may equal gate or up);
	// SwiGLUBackward writes dgate and dup from dout.
	SiLUMul(out, gate, up View)
	SwiGLUBackward(dgate, dup, dout, gate, up View)

	// Embed gathers rows ids of table [vocab × dim] into out;
	// EmbedBackward: dtable[ids[i]] += dx[i].
	Embed(out, table View, ids []int, dim int)
	EmbedBackward(dtable, dx View, ids []int, dim int)

	// The losses take one target per row (−1: none) and return the mean
	// over rows with a target, after every operation issued before (a
	// sync). With dlogits present they write weight·∂loss/∂logits into it:
	// CrossEntropy overwrites dlogits (rows without a target get 0); KL and
	// SparseKL add into it.
	//
	// KL is KL(softmax(teacher) ‖ softmax(logits)) over the full
	// vocabulary; SparseKL the same over each row's k cached teacher
	// entries (idx/val [rows × k]), both renormalised over those k.
	CrossEntropy(dlogits, logits View, targets []int, vocab int, weight float64) (float64, error)
	KL(dlogits, logits, teacher View, targets []int, vocab int, weight float64) (float64, error)
	SparseKL(dlogits, logits View, idx []int32, val []float32, k int, targets []int, vocab int, weight float64) (float64, error)

	// AdamW updates w, m and v from g in place; a non-finite gradient
	// makes the next Sync return ErrNonFinite.
	AdamW(w, g, m, v View, s AdamWStep)
}
