package nn

// AttentionForward computes causal grouped-query attention for T query tokens
// of one sequence that follow past cached tokens. q is [T × nH × d], k and v
// are [(past+T) × nKV × d] (cache first), out is [T × nH × d]. Query t sits at
// position past+t and attends to keys 0..past+t. Query head h reads KV head
// KVHead(h, nH, nKV, kvMap): kvMap[h], or h / (nH/nKV) when kvMap is nil. If probs is not nil it receives the softmax probabilities
// [nH × T × (past+T)] for the backward pass. Heads run in parallel; each
// writes only its own slices.
func AttentionForward(out, probs, q, k, v []float32, T, past, nH, nKV int, kvMap []int, d int) {
	attentionLoop(out, probs, q, k, v, T, past, nH, nKV, kvMap, d)
}
