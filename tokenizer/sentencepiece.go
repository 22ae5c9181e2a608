package tokenizer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
	spUnused      = 5
	spByte        = 6
)

// ParseSentencePiece reads a SentencePiece BPE tokenizer.model (a serialized
// ModelProto) into the score-BPE that llama2.c also uses: Llama-2's
// tokenizer.bin is an export of the same pieces and scores with "▁" turned
// into " ". Only BPE models with the identity normalizer are supported.
func ParseSentencePiece(data []byte, side SideFiles) (*ScoreBPE, error) {
	t := &ScoreBPE{space: "▁", unkID: 0, bos: 1, eos: 2}
	var types []int
	modelType := 1 // UNIGRAM is the proto default
	addDummyPrefix, removeExtra := true, true
	err := protoFields(data, "ModelProto", func(num int, v uint64, b []byte) error {
		switch num {
		case 1: // pieces
			piece, score, typ := "", float32(0), spNormal
			err := protoFields(b, fmt.Sprintf("pieces[%d]", len(t.pieces)), func(n int, v uint64, b []byte) error {
				switch n {
				case 1:
					piece = string(b)
				case 2:
					score = math.Float32frombits(uint32(v))
				case 3:
					typ = int(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(t.pieces) >= 1<<22 {
				return errors.New("more than 4M pieces")
			}
			t.pieces = append(t.pieces, piece)
			t.scores = append(t.scores, score)
			types = append(types, typ)
		case 2: // trainer_spec
			return protoFields(b, "trainer_spec", func(n int, v uint64, _ []byte) error {
				switch n {
				case 3:
					modelType = int(v)
				case 40:
					t.unkID = int32(v)
				case 41:
					t.bos = int(int32(v))
				case 42:
					t.eos = int(int32(v))
				}
				return nil
			})
		case 3: // normalizer_spec
			return protoFields(b, "normalizer_spec", func(n int, v uint64, b []byte) error {
				switch n {
				case 2:
					if len(b) > 0 {
						return errors.New("normalizer_spec.precompiled_charsmap not supported (only the identity normalizer is)")
					}
				case 3:
					addDummyPrefix = v != 0
				case 4:
					removeExtra = v != 0
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if modelType != 2 {
		return nil, fmt.Errorf("trainer_spec.model_type %d not supported (only BPE = 2)", modelType)
	}
	if len(t.pieces) == 0 {
		return nil, errors.New("pieces: none")
	}
	if !addDummyPrefix || removeExtra {
		return nil, fmt.Errorf("normalizer_spec: add_dummy_prefix=%v remove_extra_whitespaces=%v not supported (want true, false as in Llama-2)", addDummyPrefix, removeExtra)
	}
	n := len(t.pieces)
	for _, id := range []*int{&t.bos, &t.eos} {
		if *id >= n {
			*id = -1
		}
	}
	if int(t.unkID) >= n || t.unkID < 0 {
		t.unkID = -1
	}
	// SentencePiece merges into normal, user-defined and unused pieces only.
	t.index(func(id int) bool {
		switch types[id] {
		case spNormal, spUserDefined, spUnused:
			return true
		}
		return false
	})
	t.hidden = make([]bool, n)
	for i, typ := range types {
		t.hidden[i] = typ == spControl
	}
	t.addBOS = t.bos >= 0
	if side.TokenizerConfig != nil {
		var tc tokenizerConfig
		if err := json.Unmarshal(side.TokenizerConfig, &tc); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %v", err)
		}
		if tc.AddBOS != nil {
			t.addBOS = *tc.AddBOS && t.bos >= 0
		}
	}
	return t, nil
}

// protoFields walks the fields of a protobuf message. For varint, fixed32 and
// fixed64 fields v holds the value; for length-delimited ones b holds the bytes.
func protoFields(data []byte, path string, fn func(num int, v uint64, b []byte) error) error {
	for len(data) > 0 {
		tag, n := binary.Uvarint(data)
		if n <= 0 {
			return fmt.Errorf("%s: bad field tag", path)
		}
		data = data[n:]
		num, typ := int(tag>>3), tag&7
		var v uint64
		var b []byte
		switch typ {
		case 0:
			v, n = binary.Uvarint(data)
			if n <= 0 {
				return fmt.Errorf("%s: field %d: bad varint", path, num)
			}
			data = data[n:]
		case 1:
			if len(data) < 8 {
				return fmt.Errorf("%s: field %d: truncated", path, num)
			}
			v, data = binary.LittleEndian.Uint64(data), data[8:]
		case 2:
			l, n := binary.Uvarint(data)
			if n <= 0 || l > uint64(len(data)-n) {
				return fmt.Errorf("%s: field %d: bad length", path, num)
			}
			b, data = data[n:n+int(l)], data[n+int(l):]
		case 5:
			if len(data) < 4 {
				return fmt.Errorf("%s: field %d: truncated", path, num)
			}
			v, data = uint64(binary.LittleEndian.Uint32(data)), data[4:]
		default:
			return fmt.Errorf("%s: field %d: wire type %d not supported", path, num, typ)
		}
		if err := fn(num, v, b); err != nil {
			return err
		}
	}
	return nil
}
