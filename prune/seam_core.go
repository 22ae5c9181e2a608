package prune

import (
	"github.com/darwinlm/darwinlm-go/model"
)

// sliceLayer keeps the given query heads (ascending) with the K/V heads
// they read, and the given MLP neurons; o_proj = wo and down_proj = wdown
// when given (the database's compensated weights). nil keeps a module
// whole with its dense weights; an empty list removes it.
//
// SEAM: the contract's model.SliceLayer (branch core) is not there yet; this
// local version follows the same contract and is replaced when it lands.
func sliceLayer(c model.Config, l *model.Layer, keepHeads []int, wo []float32, keepNeurons []int, wdown []float32) (model.Layer, error) {
	out := *l
	H, d := c.Hidden, c.HeadDim
	if keepHeads != nil {
		if len(keepHeads) == 0 {
			out.Heads, out.KVHeads, out.KVMap = 0, 0, nil
			out.Wq, out.Wk, out.Wv, out.Wo, out.Bq, out.Bk, out.Bv, out.Bo = nil, nil, nil, nil, nil, nil, nil, nil
		} else {
			// K/V heads still read, renumbered in ascending order.
			newKV := make([]int, l.KVHeads)
			for i := range newKV {
				newKV[i] = -1
			}
			for _, h := range keepHeads {
				newKV[l.KVHead(h)] = 0
			}
			var kv []int
			for g := range newKV {
				if newKV[g] == 0 {
					newKV[g] = len(kv)
					kv = append(kv, g)
				}
			}
			kvMap := make([]int, len(keepHeads))
			standard := len(keepHeads)%len(kv) == 0
			for i, h := range keepHeads {
				kvMap[i] = newKV[l.KVHead(h)]
				if kvMap[i] != i/max(1, len(keepHeads)/len(kv)) {
					standard = false
				}
			}
			if standard {
				kvMap = nil
			}
			qrows, kvrows := expand(keepHeads, d), expand(kv, d)
			out.Heads, out.KVHeads, out.KVMap = len(keepHeads), len(kv), kvMap
			out.Wq, out.Bq = gatherRows(l.Wq, H, qrows), gatherVec(l.Bq, qrows)
			out.Wk, out.Bk = gatherRows(l.Wk, H, kvrows), gatherVec(l.Bk, kvrows)
			out.Wv, out.Bv = gatherRows(l.Wv, H, kvrows), gatherVec(l.Bv, kvrows)
			if wo == nil {
				wo = gatherCols(l.Wo, H, l.Heads*d, qrows)
			}
			out.Wo = wo
		}
	}
	if keepNeurons != nil {
		if len(keepNeurons) == 0 {
			out.Inter = 0
			out.Wgate, out.Wup, out.Wdown, out.Bgate, out.Bup, out.Bdown = nil, nil, nil, nil, nil, nil
		} else {
			out.Inter = len(keepNeurons)
			out.Wgate, out.Bgate = gatherRows(l.Wgate, H, keepNeurons), gatherVec(l.Bgate, keepNeurons)
			out.Wup, out.Bup = gatherRows(l.Wup, H, keepNeurons), gatherVec(l.Bup, keepNeurons)
			if wdown == nil {
				wdown = gatherCols(l.Wdown, H, l.Inter, keepNeurons)
			}
			out.Wdown = wdown
		}
	}
	return out, nil
}
