package evolve

// The seam through which package dist (NATS JetStream workers) evaluates
// candidates on other machines without evolve importing it: Config.Remote
// receives everything a worker needs and returns the Evaluator the search
// calls; each Evaluate call's context names its task (TaskFrom).

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/prune"
	"github.com/darwinlm/darwinlm-go/train"
)

// RemoteInputs is what a remote evaluator needs to rebuild the
// ModelEvaluator elsewhere (Local is the coordinator's own, used for
// parameter counts and held-out evaluation).
type RemoteInputs struct {
	RunID                        string
	Dense                        *model.Model
	Database                     *prune.Database
	Cache                        *DenseCache // nil for ppl
	FitPool, TrainPool, EvalPool [][]int
	Fitness                      string
	Train                        train.Options
	Local                        *ModelEvaluator
}

// RemoteFunc turns the inputs into the Evaluator the search calls; it is
// called once, after the pools and the dense-logit cache exist.
type RemoteFunc func(ctx context.Context, in RemoteInputs) (Evaluator, error)

// TaskInfo names one Evaluate call of a search: what a distributed
// evaluator keys its task messages by.
type TaskInfo struct {
	RunID      string
	Generation int // −1: the initial population
	Stage      int
	Candidate  int64
}

type taskKey struct{}

// WithTask attaches t to ctx (the search does it for every Evaluate call).
func WithTask(ctx context.Context, t TaskInfo) context.Context {
	return context.WithValue(ctx, taskKey{}, t)
}

// TaskFrom returns the task of an Evaluate call's context.
func TaskFrom(ctx context.Context) (TaskInfo, bool) {
	t, ok := ctx.Value(taskKey{}).(TaskInfo)
	return t, ok
}

const cacheMagic = "DLMCACHE1"

// WriteTo writes the cache in a small binary format (little endian: magic,
// vocab, k, number of sequences, their lengths, then the logits or the
// top-k indices and values) that ReadDenseCache reads back bit for bit.
func (c *DenseCache) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	hdr := []int64{int64(c.Vocab), int64(c.K), int64(len(c.lens))}
	for _, l := range c.lens {
		hdr = append(hdr, int64(l))
	}
	bw.WriteString(cacheMagic)
	if err := binary.Write(bw, binary.LittleEndian, hdr); err != nil {
		return 0, err
	}
	var err error
	if c.K > 0 {
		if err = binary.Write(bw, binary.LittleEndian, c.top.Idx); err == nil {
			err = binary.Write(bw, binary.LittleEndian, c.top.Val)
		}
	} else {
		err = binary.Write(bw, binary.LittleEndian, c.data)
	}
	if err != nil {
		return 0, err
	}
	return 0, bw.Flush()
}

// ReadDenseCache reads what WriteTo wrote (on the heap).
func ReadDenseCache(r io.Reader) (*DenseCache, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(cacheMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != cacheMagic {
		return nil, fmt.Errorf("dense-logit cache: not a cache file (bad magic)")
	}
	var h [3]int64
	if err := binary.Read(br, binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("dense-logit cache: %w", err)
	}
	if h[0] < 1 || h[0] > 1<<24 || h[1] < 0 || h[2] < 0 || h[2] > 1<<30 {
		return nil, fmt.Errorf("dense-logit cache: bad header %v", h)
	}
	c := &DenseCache{Vocab: int(h[0]), K: int(h[1]), off: make([]int, h[2]), lens: make([]int, h[2])}
	lens := make([]int64, h[2])
	if err := binary.Read(br, binary.LittleEndian, lens); err != nil {
		return nil, fmt.Errorf("dense-logit cache: %w", err)
	}
	rows := 0
	for i, l := range lens {
		if l < 0 || l > math.MaxInt32 {
			return nil, fmt.Errorf("dense-logit cache: bad sequence length %d", l)
		}
		c.off[i], c.lens[i] = rows, int(l)
		rows += int(l)
	}
	var err error
	if c.K > 0 {
		k := min(c.K, c.Vocab)
		c.top = &train.TopKLogits{Rows: rows, K: k, Idx: make([]int32, rows*k), Val: make([]float32, rows*k)}
		if err = binary.Read(br, binary.LittleEndian, c.top.Idx); err == nil {
			err = binary.Read(br, binary.LittleEndian, c.top.Val)
		}
	} else {
		c.data = make([]float32, rows*c.Vocab)
		err = binary.Read(br, binary.LittleEndian, c.data)
	}
	if err != nil {
		return nil, fmt.Errorf("dense-logit cache: truncated: %w", err)
	}
	return c, nil
}
