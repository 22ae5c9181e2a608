package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// HFTokenizer is a Hugging Face tokenizer.json BPE tokenizer.
type HFTokenizer struct {
	model     *bpeModel
	idToTok   []string
	kind      []uint8 // per id: 0 absent, 1 token, 2 special added token
	raw       *addedMatcher
	norm      *addedMatcher
	normalize normalizer
	pre       preTokenizer
	dec       decoder

	bos, eos       int
	addBOS, addEOS bool
	prefix, suffix []int // post-processor template around the sequence
}

type hfFile struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type                    string           `json:"type"`
		Vocab                   map[string]int64 `json:"vocab"`
		Merges                  json.RawMessage  `json:"merges"`
		UnkToken                *string          `json:"unk_token"`
		ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
		FuseUnk                 bool             `json:"fuse_unk"`
		ByteFallback            bool             `json:"byte_fallback"`
		IgnoreMerges            bool             `json:"ignore_merges"`
		Dropout                 *float64         `json:"dropout"`
	} `json:"model"`
}

// SideFiles are the optional JSON files that sit beside a tokenizer and
// decide its special tokens. Nil fields are absent files.
type SideFiles struct {
	TokenizerConfig []byte // tokenizer_config.json: add_bos_token, bos_token, eos_token
	ModelConfig     []byte // config.json: bos_token_id, eos_token_id as a last resort
}

type tokenizerConfig struct {
	AddBOS   *bool           `json:"add_bos_token"`
	AddEOS   *bool           `json:"add_eos_token"`
	BOSToken json.RawMessage `json:"bos_token"`
	EOSToken json.RawMessage `json:"eos_token"`
}

type modelConfig struct {
	BOSTokenID json.RawMessage `json:"bos_token_id"`
	EOSTokenID json.RawMessage `json:"eos_token_id"`
}

// maxSparseIDs bounds how far ids may run past the number of entries, so a
// corrupt file cannot make us allocate gigabytes.
const maxSparseIDs = 1 << 16

// ParseHFJSON builds a tokenizer from the bytes of a tokenizer.json. Error
// messages name the offending field; callers add the file name.
func ParseHFJSON(data []byte, side SideFiles) (*HFTokenizer, error) {
	// Check the model type first: other models' vocab is not a map.
	var head struct {
		Model struct {
			Type string `json:"type"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if t := head.Model.Type; t != "" && t != "BPE" {
		return nil, fmt.Errorf("model.type %q not supported", t)
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	m := &f.Model
	switch m.Type {
	case "BPE":
	case "":
		if m.Vocab == nil || isNull(m.Merges) {
			return nil, errors.New("model.type missing and model is not BPE (no vocab/merges)")
		}
	default:
		return nil, fmt.Errorf("model.type %q not supported", m.Type)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, fmt.Errorf("model.continuing_subword_prefix %q not supported", *m.ContinuingSubwordPrefix)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("model.end_of_word_suffix %q not supported", *m.EndOfWordSuffix)
	}
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, errors.New("model.dropout > 0 not supported (encoding would be random)")
	}
	if len(m.Vocab) == 0 {
		return nil, errors.New("model.vocab missing or empty")
	}
	limit := int64(len(m.Vocab)) + int64(len(f.AddedTokens)) + maxSparseIDs
	vocab := make(map[string]int32, len(m.Vocab))
	maxID := int64(-1)
	for tok, id := range m.Vocab {
		if id < 0 || id >= limit {
			return nil, fmt.Errorf("model.vocab[%q]: id %d out of range", tok, id)
		}
		vocab[tok] = int32(id)
		maxID = max(maxID, id)
	}
	for i, a := range f.AddedTokens {
		if a.ID < 0 || int64(a.ID) >= limit {
			return nil, fmt.Errorf("added_tokens[%d]: id %d out of range", i, a.ID)
		}
		maxID = max(maxID, int64(a.ID))
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	unk := ""
	if m.UnkToken != nil {
		unk = *m.UnkToken
	}
	model, err := newBPEModel(vocab, merges, unk, m.UnkToken != nil)
	if err != nil {
		return nil, err
	}
	model.fuseUnk, model.byteFallback, model.ignoreMerges = m.FuseUnk, m.ByteFallback, m.IgnoreMerges

	t := &HFTokenizer{model: model, idToTok: make([]string, maxID+1), kind: make([]uint8, maxID+1)}
	for tok, id := range vocab {
		t.idToTok[id], t.kind[id] = tok, 1
	}
	if t.normalize, err = parseNormalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, err
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer, "pre_tokenizer"); err != nil {
		return nil, err
	}
	if t.dec, err = parseDecoder(f.Decoder, "decoder"); err != nil {
		return nil, err
	}
	var rawPats, normPats []addedPattern
	for _, a := range f.AddedTokens {
		t.idToTok[a.ID] = a.Content
		t.kind[a.ID] = 1
		if a.Special {
			t.kind[a.ID] = 2
		}
		if a.Normalized {
			// HF searches normalized tokens in normalized text, so it
			// normalizes their content too (Prepend included).
			p := a.Content
			if t.normalize != nil {
				p = t.normalize(p)
			}
			normPats = append(normPats, addedPattern{text: p, tok: a})
		} else {
			rawPats = append(rawPats, addedPattern{text: a.Content, tok: a})
		}
	}
	t.raw, t.norm = newAddedMatcher(rawPats), newAddedMatcher(normPats)
	if err := t.parsePostProcessor(f.PostProcessor, "post_processor"); err != nil {
		return nil, err
	}
	if err := t.configureSpecials(side); err != nil {
		return nil, err
	}
	return t, nil
}

func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err == nil {
		out := make([][2]string, len(lines))
		for i, l := range lines {
			a, b, ok := strings.Cut(l, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("model.merges[%d] %q: want two tokens separated by one space", i, l)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	// Newer files store each merge as a two-element array.
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: want strings or [a, b] pairs: %v", err)
	}
	out := make([][2]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d]: want 2 tokens, got %d", i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

// parsePostProcessor records the special ids the post-processor puts around a
// single sequence. Unknown post-processors are ignored: Encode never applies
// them, they only inform AddBOS.
func (t *HFTokenizer) parsePostProcessor(raw json.RawMessage, path string) error {
	if isNull(raw) {
		return nil
	}
	var pp struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
		Cls []json.RawMessage `json:"cls"`
		Sep []json.RawMessage `json:"sep"`
	}
	if err := json.Unmarshal(raw, &pp); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	switch pp.Type {
	case "Sequence":
		for i, r := range pp.Processors {
			if err := t.parsePostProcessor(r, fmt.Sprintf("%s.processors[%d]", path, i)); err != nil {
				return err
			}
		}
	case "TemplateProcessing":
		seen := false
		for i, piece := range pp.Single {
			switch {
			case piece.Sequence != nil:
				seen = true
			case piece.SpecialToken != nil:
				st, ok := pp.SpecialTokens[piece.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("%s.single[%d]: special token %q not in special_tokens", path, i, piece.SpecialToken.ID)
				}
				if seen {
					t.suffix = append(t.suffix, st.IDs...)
				} else {
					t.prefix = append(t.prefix, st.IDs...)
				}
			}
		}
	case "BertProcessing", "RobertaProcessing":
		var cls, sep struct{ id int }
		if len(pp.Cls) == 2 && json.Unmarshal(pp.Cls[1], &cls.id) == nil {
			t.prefix = append(t.prefix, cls.id)
		}
		if len(pp.Sep) == 2 && json.Unmarshal(pp.Sep[1], &sep.id) == nil {
			t.suffix = append(t.suffix, sep.id)
		}
	}
	return nil
}

// configureSpecials decides BOS/EOS and AddBOS: tokenizer_config.json wins
// (transformers rebuilds the post-processor from add_bos_token), then the
// post-processor template, then config.json's ids.
func (t *HFTokenizer) configureSpecials(side SideFiles) error {
	t.bos, t.eos = -1, -1
	var tc tokenizerConfig
	if side.TokenizerConfig != nil {
		if err := json.Unmarshal(side.TokenizerConfig, &tc); err != nil {
			return fmt.Errorf("tokenizer_config.json: %v", err)
		}
	}
	if name, ok := tokenName(tc.BOSToken); ok {
		t.bos = t.tokenID(name)
	}
	if name, ok := tokenName(tc.EOSToken); ok {
		t.eos = t.tokenID(name)
	}
	if t.bos < 0 && len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	}
	if t.eos < 0 && len(t.suffix) > 0 {
		t.eos = t.suffix[len(t.suffix)-1]
	}
	if side.ModelConfig != nil && (t.bos < 0 || t.eos < 0) {
		var mc modelConfig
		if err := json.Unmarshal(side.ModelConfig, &mc); err != nil {
			return fmt.Errorf("config.json: %v", err)
		}
		if id, ok := firstID(mc.BOSTokenID); ok && t.bos < 0 {
			t.bos = id
		}
		if id, ok := firstID(mc.EOSTokenID); ok && t.eos < 0 {
			t.eos = id
		}
	}
	if tc.AddBOS != nil {
		t.addBOS = *tc.AddBOS
	} else {
		t.addBOS = len(t.prefix) > 0 && t.prefix[0] == t.bos
	}
	if tc.AddEOS != nil {
		t.addEOS = *tc.AddEOS
	} else {
		t.addEOS = len(t.suffix) > 0 && t.suffix[len(t.suffix)-1] == t.eos
	}
	if t.bos >= len(t.idToTok) {
		t.bos = -1
	}
	if t.eos >= len(t.idToTok) {
		t.eos = -1
	}
	return nil
}

// tokenName reads a bos_token/eos_token value: a string or {"content": ...}.
func tokenName(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var o struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Content != nil {
		return *o.Content, true
	}
	return "", false
}

// firstID reads an id that config.json may give as a number or a list.
func firstID(raw json.RawMessage) (int, bool) {
	if isNull(raw) {
		return 0, false
	}
	var id int
	if json.Unmarshal(raw, &id) == nil {
		return id, id >= 0
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return ids[0], ids[0] >= 0
	}
	return 0, false
}

// tokenID looks a token up the way HF does: added tokens, then the model.
func (t *HFTokenizer) tokenID(tok string) int {
	for _, m := range []*addedMatcher{t.raw, t.norm} {
		for _, p := range m.pats {
			if p.tok.Content == tok {
				return p.tok.ID
			}
		}
	}
	if id, ok := t.model.vocab[tok]; ok {
		return int(id)
	}
	return -1
}

// TokenID returns the id of a token string, or -1.
func (t *HFTokenizer) TokenID(tok string) int { return t.tokenID(tok) }

// Encode tokenizes text without adding BOS/EOS. Added and special tokens
// that appear in the text are still recognised, as in HF. Invalid UTF-8 is
// replaced by U+FFFD first, since HF only sees valid strings.
func (t *HFTokenizer) Encode(text string) []int {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	var ids []int
	for _, seg := range t.raw.split(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		s := seg.text
		if t.normalize != nil {
			s = t.normalize(s)
		}
		for _, sub := range t.norm.split(s) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
				continue
			}
			pieces := []string{sub.text}
			if t.pre != nil {
				pieces = t.pre(pieces, seg.start == 0 && sub.start == 0)
			}
			for _, p := range pieces {
				ids = t.model.tokenize(ids, p)
			}
		}
	}
	return ids
}

// Decode turns ids into text, skipping special tokens and unknown ids.
func (t *HFTokenizer) Decode(ids []int) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.kind) || t.kind[id] != 1 {
			continue
		}
		toks = append(toks, t.idToTok[id])
	}
	if t.dec == nil {
		return strings.Join(toks, " ") // HF's behaviour without a decoder
	}
	return strings.Join(t.dec(toks), "")
}

// Token returns the string of an id ("" when unknown).
func (t *HFTokenizer) Token(id int) string {
	if id < 0 || id >= len(t.idToTok) {
		return ""
	}
	return t.idToTok[id]
}

func (t *HFTokenizer) VocabSize() int { return len(t.idToTok) }
func (t *HFTokenizer) BOS() int       { return t.bos }
func (t *HFTokenizer) EOS() int       { return t.eos }
func (t *HFTokenizer) AddBOS() bool   { return t.addBOS }

// AddEOS reports add_eos_token (or an EOS at the end of the template).
func (t *HFTokenizer) AddEOS() bool { return t.addEOS }
