package evolve

import (
	"fmt"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

// DenseCache holds the dense model's logits for every sequence of the
// fitness pool, computed once (the reference keeps them on the CPU): in
// full ([Σ len × vocab] float32) for kl, or the top-k per position for
// sparse_kl. A full cache larger than the memory limit lives in a file
// mapped into memory (created in the given folder and unlinked at once, so
// the disk space returns when the process ends, even when killed).
type DenseCache struct {
	Vocab, K int // K > 0: top-k only
	off      []int
	lens     []int
	data     []float32
	top      *train.TopKLogits
	unmap    func() error
}

// DefaultCacheMemory is the largest full-vocabulary cache kept on the heap.
const DefaultCacheMemory = 1 << 30

// NewDenseCache runs dense over seqs (in passes of at most chunkTokens
// rows) and keeps its logits; k > 0 keeps the top-k per position only.
func NewDenseCache(be backend.Backend, dense *model.Model, seqs [][]int, k int, dir string, memLimit int64) (*DenseCache, error) {
	V := dense.Cfg.Vocab
	c := &DenseCache{Vocab: V, K: k, off: make([]int, len(seqs)), lens: make([]int, len(seqs))}
	rows := 0
	for i, s := range seqs {
		c.off[i], c.lens[i] = rows, len(s)
		rows += len(s)
	}
	if k > 0 {
		c.top = &train.TopKLogits{Rows: rows, K: min(k, V), Idx: make([]int32, rows*min(k, V)), Val: make([]float32, rows*min(k, V))}
	} else {
		n := int64(rows) * int64(V)
		if n*4 > memLimit && dir != "" {
			data, unmap, err := mapFloats(dir, n)
			if err != nil {
				return nil, fmt.Errorf("dense-logit cache of %d MiB in %s: %w", n*4>>20, dir, err)
			}
			c.data, c.unmap = data, unmap
		} else {
			c.data = make([]float32, n)
		}
	}
	// The dense weights are made resident once (on the CPU: its slices).
	r, err := dense.Upload(nn.DeviceFor(be))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dense-logit cache: %w", err)
	}
	defer r.Release()
	bar := progress.New(int64(len(seqs)), "dense logits")
	for _, ch := range chunks(seqs) {
		part := seqs[ch[0]:ch[1]]
		z, err := r.Forward(part)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dense-logit cache, sequences %d–%d of %d: %w", ch[0]+1, ch[1], len(seqs), err)
		}
		r0 := c.off[ch[0]]
		n := len(z) / V
		if k > 0 {
			t := train.NewTopKLogits(z, n, V, k)
			copy(c.top.Idx[r0*c.top.K:], t.Idx)
			copy(c.top.Val[r0*c.top.K:], t.Val)
		} else {
			copy(c.data[r0*V:], z)
		}
		bar.Add(ch[1] - ch[0])
	}
	bar.Finish()
	return c, nil
}

// Close releases a file-backed cache.
func (c *DenseCache) Close() error {
	if c.unmap != nil {
		u := c.unmap
		c.unmap, c.data = nil, nil
		return u()
	}
	return nil
}

// full returns the cached logits of pool sequences ids, each cut to the
// length of the matching seqs entry (the reference truncates the cached
// logits with the sequence), concatenated.
func (c *DenseCache) full(ids []int, seqs [][]int) []float32 {
	n := 0
	for _, s := range seqs {
		n += len(s)
	}
	out := make([]float32, 0, n*c.Vocab)
	for i, id := range ids {
		r0 := c.off[id]
		out = append(out, c.data[r0*c.Vocab:(r0+len(seqs[i]))*c.Vocab]...)
	}
	return out
}

// topK is full for a top-k cache.
func (c *DenseCache) topK(ids []int, seqs [][]int) *train.TopKLogits {
	k := c.top.K
	t := &train.TopKLogits{K: k}
	for i, id := range ids {
		r0 := c.off[id]
		r1 := r0 + len(seqs[i])
		t.Idx = append(t.Idx, c.top.Idx[r0*k:r1*k]...)
		t.Val = append(t.Val, c.top.Val[r0*k:r1*k]...)
		t.Rows += len(seqs[i])
	}
	return t
}
