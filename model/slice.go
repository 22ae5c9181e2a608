package model

import "fmt"

// SliceLayer returns layer l of a model with config c keeping only the query
// heads keepHeads (ascending indices into l's heads) and the MLP neurons
// keepNeurons (ascending indices into l's Inter).
//
// Attention: the kept heads' rows of q_proj (and its bias) are kept with the
// K/V heads they read; a K/V head no kept head reads is dropped (so an MHA
// layer, KVHeads == Heads, loses a head's k/v rows with its query rows, and
// a GQA layer keeps a shared K/V head while any of its query heads is left).
// KVMap is renumbered (nil when the result is the standard grouping).
// o_proj is wo ([Hidden × len(keepHeads)*HeadDim], used as given, e.g. the
// OBS-updated matrix of a pruning database) or, when wo is nil, l's o_proj
// restricted to the kept heads' columns.
//
// MLP: the kept neurons' rows of gate_proj and up_proj (and biases) are
// kept; down_proj is wdown ([Hidden × len(keepNeurons)]) or l's columns.
//
// An empty keep list removes the sublayer (Heads == 0 or Inter == 0, its
// tensors and its output bias nil); the norm weights are always kept. A
// sublayer kept whole without a replacement matrix aliases l's tensors, and
// the result may alias wo and wdown: nobody writes into a model's tensors
// in place (see Model.Derive).
func SliceLayer(c Config, l *Layer, keepHeads []int, wo []float32, keepNeurons []int, wdown []float32) (Layer, error) {
	H, d := c.Hidden, c.HeadDim
	if err := checkKeep("head", keepHeads, l.Heads); err != nil {
		return Layer{}, err
	}
	if err := checkKeep("neuron", keepNeurons, l.Inter); err != nil {
		return Layer{}, err
	}
	if wo != nil && len(wo) != H*len(keepHeads)*d {
		return Layer{}, fmt.Errorf("slice layer: o_proj has %d values, want %d × %d (%d heads × head_dim %d)", len(wo), H, len(keepHeads)*d, len(keepHeads), d)
	}
	if wdown != nil && len(wdown) != H*len(keepNeurons) {
		return Layer{}, fmt.Errorf("slice layer: down_proj has %d values, want %d × %d", len(wdown), H, len(keepNeurons))
	}
	o := Layer{AttnNorm: l.AttnNorm, MLPNorm: l.MLPNorm}

	switch {
	case len(keepHeads) == 0:
	case len(keepHeads) == l.Heads: // every head kept (ascending, so in order)
		o.Heads, o.KVHeads, o.KVMap = l.Heads, l.KVHeads, l.KVMap
		o.Wq, o.Wk, o.Wv, o.Bq, o.Bk, o.Bv, o.Wo, o.Bo = l.Wq, l.Wk, l.Wv, l.Bq, l.Bk, l.Bv, l.Wo, l.Bo
		if wo != nil {
			o.Wo = wo
		}
	default:
		keepKV, newKV := keptKV(l, keepHeads)
		o.Heads, o.KVHeads = len(keepHeads), len(keepKV)
		o.KVMap = make([]int, len(keepHeads))
		for i, h := range keepHeads {
			o.KVMap[i] = newKV[l.KVHead(h)]
		}
		if standardKVMap(o.Heads, o.KVHeads, o.KVMap) {
			o.KVMap = nil
		}
		o.Wq, o.Bq = rowBlocks(l.Wq, keepHeads, d*H), rowBlocks(l.Bq, keepHeads, d)
		o.Wk, o.Bk = rowBlocks(l.Wk, keepKV, d*H), rowBlocks(l.Bk, keepKV, d)
		o.Wv, o.Bv = rowBlocks(l.Wv, keepKV, d*H), rowBlocks(l.Bv, keepKV, d)
		o.Wo, o.Bo = wo, l.Bo
		if wo == nil {
			o.Wo = colBlocks(l.Wo, H, l.Heads*d, keepHeads, d)
		}
	}

	switch {
	case len(keepNeurons) == 0:
	case len(keepNeurons) == l.Inter:
		o.Inter = l.Inter
		o.Wgate, o.Wup, o.Wdown, o.Bgate, o.Bup, o.Bdown = l.Wgate, l.Wup, l.Wdown, l.Bgate, l.Bup, l.Bdown
		if wdown != nil {
			o.Wdown = wdown
		}
	default:
		o.Inter = len(keepNeurons)
		o.Wgate, o.Bgate = rowBlocks(l.Wgate, keepNeurons, H), rowBlocks(l.Bgate, keepNeurons, 1)
		o.Wup, o.Bup = rowBlocks(l.Wup, keepNeurons, H), rowBlocks(l.Bup, keepNeurons, 1)
		o.Wdown, o.Bdown = wdown, l.Bdown
		if wdown == nil {
			o.Wdown = colBlocks(l.Wdown, H, l.Inter, keepNeurons, 1)
		}
	}
	return o, nil
}

// keptKV returns the K/V heads that the query heads keep read, in their
// original order, and for each of l's K/V heads its index among them (−1
// when dropped).
func keptKV(l *Layer, keep []int) (keepKV, newKV []int) {
	newKV = make([]int, l.KVHeads)
	for i := range newKV {
		newKV[i] = -1
	}
	for _, h := range keep {
		newKV[l.KVHead(h)] = 0
	}
	for g, used := range newKV {
		if used == 0 {
			newKV[g] = len(keepKV)
			keepKV = append(keepKV, g)
		}
	}
	return keepKV, newKV
}

// SlicedParams is the number of parameters of SliceLayer(c, l, keepHeads,
// nil, keepNeurons, nil) (a replacement o_proj/down_proj has the same size),
// computed without building the layer.
func SlicedParams(c Config, l *Layer, keepHeads, keepNeurons []int) (int64, error) {
	if err := checkKeep("head", keepHeads, l.Heads); err != nil {
		return 0, err
	}
	if err := checkKeep("neuron", keepNeurons, l.Inter); err != nil {
		return 0, err
	}
	n := int64(len(l.AttnNorm) + len(l.MLPNorm))
	if nh := len(keepHeads); nh > 0 {
		keepKV, _ := keptKV(l, keepHeads)
		nkv := len(keepKV)
		hd := int64(c.Hidden) * int64(c.HeadDim)
		n += 2*int64(nh)*hd + 2*int64(nkv)*hd + int64(len(l.Bo))
		if l.Bq != nil {
			n += int64(nh * c.HeadDim)
		}
		if l.Bk != nil {
			n += int64(nkv * c.HeadDim)
		}
		if l.Bv != nil {
			n += int64(nkv * c.HeadDim)
		}
	}
	if ni := int64(len(keepNeurons)); ni > 0 {
		n += 3*ni*int64(c.Hidden) + int64(len(l.Bdown))
		if l.Bgate != nil {
			n += ni
		}
		if l.Bup != nil {
			n += ni
		}
	}
	return n, nil
}

// checkKeep checks that keep is strictly ascending within [0, n).
func checkKeep(unit string, keep []int, n int) error {
	for i, k := range keep {
		if k < 0 || k >= n {
			return fmt.Errorf("slice layer: %s %d out of range [0, %d)", unit, k, n)
		}
		if i > 0 && k <= keep[i-1] {
			return fmt.Errorf("slice layer: %s indices must be strictly ascending (%d after %d)", unit, k, keep[i-1])
		}
	}
	return nil
}

// rowBlocks gathers blocks of size consecutive values (a head's rows, or one
// value) at block indices idx; nil stays nil.
func rowBlocks(s []float32, idx []int, size int) []float32 {
	if s == nil {
		return nil
	}
	o := make([]float32, 0, len(idx)*size)
	for _, i := range idx {
		o = append(o, s[i*size:(i+1)*size]...)
	}
	return o
}

// colBlocks gathers, from a [rows × cols] matrix, the column blocks of width
// w at block indices idx.
func colBlocks(s []float32, rows, cols int, idx []int, w int) []float32 {
	o := make([]float32, 0, rows*len(idx)*w)
	for r := 0; r < rows; r++ {
		row := s[r*cols : (r+1)*cols]
		for _, i := range idx {
			o = append(o, row[i*w:(i+1)*w]...)
		}
	}
	return o
}
