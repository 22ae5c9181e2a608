package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// Llama2CHeader is the 7-int32 header of a llama2.c checkpoint.
type Llama2CHeader struct {
	Dim, HiddenDim, Layers, Heads, KVHeads, Vocab, SeqLen int
	// Shared is true when the classifier is the token embedding (a
	// positive vocab_size in the file).
	Shared bool
}

// Llama2CHeaderSize is the byte size of the header.
const Llama2CHeaderSize = 28

// HeadSize is dim / n_heads.
func (h Llama2CHeader) HeadSize() int { return h.Dim / h.Heads }

// KVDim is dim * n_kv_heads / n_heads.
func (h Llama2CHeader) KVDim() int { return h.Dim * h.KVHeads / h.Heads }

// NumFloats is the number of float32 values the file holds after the header.
func (h Llama2CHeader) NumFloats() int64 {
	d, hd, L, V, kv := int64(h.Dim), int64(h.HiddenDim), int64(h.Layers), int64(h.Vocab), int64(h.KVDim())
	n := V*d + // token_embedding_table
		L*d + // rms_att_weight
		L*d*d + 2*L*d*kv + L*d*d + // wq, wk, wv, wo
		L*d + // rms_ffn_weight
		3*L*d*hd + // w1, w2, w3
		d + // rms_final_weight
		int64(h.SeqLen)*int64(h.HeadSize()) // freq_cis_real + freq_cis_imag (seq_len*head_size/2 each)
	if !h.Shared {
		n += V * d
	}
	return n
}

// ParseLlama2CHeader decodes and validates the header. fileSize is the size
// of the whole file; it must match the size the header implies exactly.
// name is used in errors.
func ParseLlama2CHeader(name string, b []byte, fileSize int64) (Llama2CHeader, error) {
	if len(b) < Llama2CHeaderSize || fileSize < Llama2CHeaderSize {
		return Llama2CHeader{}, fmt.Errorf("%s: llama2.c checkpoint is %d bytes, shorter than its 28-byte header", name, fileSize)
	}
	var v [7]int32
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	h := Llama2CHeader{Dim: int(v[0]), HiddenDim: int(v[1]), Layers: int(v[2]), Heads: int(v[3]), KVHeads: int(v[4]), Vocab: int(v[5]), SeqLen: int(v[6])}
	h.Shared = h.Vocab > 0
	if h.Vocab < 0 {
		if v[5] == math.MinInt32 {
			return Llama2CHeader{}, fmt.Errorf("%s: header field vocab_size %d is out of range", name, v[5])
		}
		h.Vocab = -h.Vocab
	}
	for _, f := range []struct {
		n string
		v int
	}{{"dim", h.Dim}, {"hidden_dim", h.HiddenDim}, {"n_layers", h.Layers}, {"n_heads", h.Heads}, {"n_kv_heads", h.KVHeads}, {"vocab_size", h.Vocab}, {"seq_len", h.SeqLen}} {
		if f.v <= 0 || f.v > 1<<24 {
			return Llama2CHeader{}, fmt.Errorf("%s: header field %s = %d is out of range (not a llama2.c checkpoint?)", name, f.n, f.v)
		}
	}
	if h.Dim%h.Heads != 0 {
		return Llama2CHeader{}, fmt.Errorf("%s: header: dim %d is not divisible by n_heads %d", name, h.Dim, h.Heads)
	}
	if h.KVHeads > h.Heads || h.Heads%h.KVHeads != 0 {
		return Llama2CHeader{}, fmt.Errorf("%s: header: n_heads %d is not a multiple of n_kv_heads %d", name, h.Heads, h.KVHeads)
	}
	if h.HeadSize()%2 != 0 {
		return Llama2CHeader{}, fmt.Errorf("%s: header: head size %d is odd", name, h.HeadSize())
	}
	// Fields up to 2^24 keep NumFloats well inside int64 except for the
	// products of three; bound them.
	d, hd, L, V := float64(h.Dim), float64(h.HiddenDim), float64(h.Layers), float64(h.Vocab)
	if approx := 2*V*d + L*d*(4*d+3*hd+2) + float64(h.SeqLen)*float64(h.HeadSize()); approx*4 > 1<<50 {
		return Llama2CHeader{}, fmt.Errorf("%s: header describes a %.3g-byte model (not a llama2.c checkpoint?)", name, approx*4)
	}
	want := Llama2CHeaderSize + 4*h.NumFloats()
	if fileSize < want {
		return Llama2CHeader{}, fmt.Errorf("%s: llama2.c checkpoint is truncated: %d bytes, the header (dim %d, hidden %d, %d layers, %d/%d heads, vocab %d, seq %d) needs %d",
			name, fileSize, h.Dim, h.HiddenDim, h.Layers, h.Heads, h.KVHeads, h.Vocab, h.SeqLen, want)
	}
	if fileSize > want {
		return Llama2CHeader{}, fmt.Errorf("%s: llama2.c checkpoint has %d bytes after the %d the header implies (wrong format or version?)", name, fileSize-want, want)
	}
	return h, nil
}

// LoadLlama2C loads a llama2.c checkpoint (the legacy version-0 export of
// run.c). w1, w3, w2 map to gate, up, down; RoPE is interleaved.
func LoadLlama2C(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h, err := ParseLlama2CHeader(path, b, int64(len(b)))
	if err != nil {
		return nil, err
	}
	off := Llama2CHeaderSize
	take := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[off+4*i:]))
		}
		off += 4 * n
		return out
	}
	D, HD, L, V, KV := h.Dim, h.HiddenDim, h.Layers, h.Vocab, h.KVDim()
	cfg := Config{
		Arch: "llama2c", Hidden: D, Layers: L, Heads: h.Heads, KVHeads: h.KVHeads, HeadDim: h.HeadSize(),
		Intermediate: HD, Vocab: V, MaxSeq: h.SeqLen, RopeTheta: 10000, Rope: RopeInterleaved,
		RMSEps: 1e-5, Tied: h.Shared, BOS: 1, EOS: 2,
	}
	m := &Model{Cfg: cfg, Layers: make([]Layer, L)}
	for i := range m.Layers {
		m.Layers[i].Heads, m.Layers[i].KVHeads, m.Layers[i].Inter = h.Heads, h.KVHeads, HD
	}
	m.Embed = take(V * D)
	perLayer := func(n int, set func(l *Layer, w []float32)) {
		for i := range m.Layers {
			set(&m.Layers[i], take(n))
		}
	}
	perLayer(D, func(l *Layer, w []float32) { l.AttnNorm = w })
	perLayer(D*D, func(l *Layer, w []float32) { l.Wq = w })
	perLayer(KV*D, func(l *Layer, w []float32) { l.Wk = w })
	perLayer(KV*D, func(l *Layer, w []float32) { l.Wv = w })
	perLayer(D*D, func(l *Layer, w []float32) { l.Wo = w })
	perLayer(D, func(l *Layer, w []float32) { l.MLPNorm = w })
	perLayer(HD*D, func(l *Layer, w []float32) { l.Wgate = w }) // w1
	perLayer(D*HD, func(l *Layer, w []float32) { l.Wdown = w }) // w2
	perLayer(HD*D, func(l *Layer, w []float32) { l.Wup = w })   // w3
	m.Norm = take(D)
	off += 4 * h.SeqLen * h.HeadSize() // freq_cis_real, freq_cis_imag
	if h.Shared {
		m.LMHead = m.Embed
	} else {
		m.LMHead = take(V * D)
	}
	if off != len(b) {
		return nil, fmt.Errorf("%s: internal error: read %d of %d bytes", path, off, len(b))
	}
	if err := m.Validate(path); err != nil {
		return nil, err
	}
	return m, nil
}
