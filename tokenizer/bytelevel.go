package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The vocab.json+merges.txt and tiktoken routes synthesize the tokenizer.json
// that transformers would build for the same files and reuse ParseHFJSON, so
// the three byte-level routes share one pipeline.

// Split patterns of the byte-level families.
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// synthJSON is the subset of tokenizer.json that the synthesized files fill.
type synthJSON struct {
	AddedTokens   []addedToken `json:"added_tokens"`
	Normalizer    any          `json:"normalizer"`
	PreTokenizer  any          `json:"pre_tokenizer"`
	PostProcessor any          `json:"post_processor"`
	Decoder       any          `json:"decoder"`
	Model         struct {
		Type         string           `json:"type"`
		Vocab        map[string]int64 `json:"vocab"`
		Merges       []string         `json:"merges"`
		IgnoreMerges bool             `json:"ignore_merges"`
	} `json:"model"`
}

type obj = map[string]any

func splitThenByteLevel(pattern string) any {
	return obj{"type": "Sequence", "pretokenizers": []any{
		obj{"type": "Split", "pattern": obj{"Regex": pattern}, "behavior": "Isolated", "invert": false},
		obj{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
	}}
}

// configAddedTokens reads tokenizer_config.json's added_tokens_decoder.
func configAddedTokens(side SideFiles) ([]addedToken, error) {
	if side.TokenizerConfig == nil {
		return nil, nil
	}
	var tc struct {
		Added map[string]addedToken `json:"added_tokens_decoder"`
	}
	if err := json.Unmarshal(side.TokenizerConfig, &tc); err != nil {
		return nil, fmt.Errorf("tokenizer_config.json: %v", err)
	}
	var out []addedToken
	for k, a := range tc.Added {
		id, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: added_tokens_decoder key %q is not an id", k)
		}
		a.ID = id
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ParseVocabMerges builds a GPT-2-style byte-level BPE from vocab.json and
// merges.txt. config.json's model_type "qwen2" selects Qwen2's split regex
// and NFC normalizer; anything else gets GPT-2's ByteLevel regex.
func ParseVocabMerges(vocabJSON, mergesTxt []byte, side SideFiles) (*HFTokenizer, error) {
	var s synthJSON
	s.Model.Type = "BPE"
	if err := json.Unmarshal(vocabJSON, &s.Model.Vocab); err != nil {
		return nil, fmt.Errorf("vocab.json: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(mergesTxt))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || (n == 1 && strings.HasPrefix(line, "#version")) {
			continue
		}
		s.Model.Merges = append(s.Model.Merges, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("merges.txt: %v", err)
	}
	var mc struct {
		ModelType string `json:"model_type"`
	}
	if side.ModelConfig != nil {
		_ = json.Unmarshal(side.ModelConfig, &mc) // only a hint; configureSpecials reports bad JSON
	}
	added, err := configAddedTokens(side)
	if err != nil {
		return nil, err
	}
	s.Decoder = obj{"type": "ByteLevel"}
	if mc.ModelType == "qwen2" {
		s.Normalizer = obj{"type": "NFC"}
		s.PreTokenizer = splitThenByteLevel(qwen2Pattern)
		if added == nil {
			// Qwen2 keeps its specials outside vocab.json; these three are
			// fixed across the Qwen2/2.5 family.
			next := int(len(s.Model.Vocab))
			for i, c := range []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"} {
				added = append(added, addedToken{ID: next + i, Content: c, Special: true})
			}
		}
	} else {
		s.PreTokenizer = obj{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}
		if added == nil {
			if id, ok := s.Model.Vocab["<|endoftext|>"]; ok {
				added = []addedToken{{ID: int(id), Content: "<|endoftext|>", Special: true}}
			}
		}
	}
	s.AddedTokens = added
	return parseSynth(&s, side)
}

func parseSynth(s *synthJSON, side SideFiles) (*HFTokenizer, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return ParseHFJSON(data, side)
}

// looksLikeTiktoken reports whether data starts like "base64 rank\n" rather
// than a protobuf.
func looksLikeTiktoken(data []byte) bool {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	tok, rank, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(tok) == 0 {
		return false
	}
	if _, err := base64.StdEncoding.DecodeString(string(tok)); err != nil {
		return false
	}
	_, err := strconv.Atoi(string(rank))
	return err == nil
}

// ParseTiktoken reads a tiktoken BPE file (Llama-3's original/tokenizer.model:
// "base64(token) rank" per line). Merging by the rank of the merged token is
// tiktoken's algorithm; every split of a token into two tokens is a merge.
// Special tokens come from tokenizer_config.json's added_tokens_decoder, or
// Llama-3's <|begin_of_text|>/<|end_of_text|> at ids 128000/128001.
func ParseTiktoken(data []byte, side SideFiles) (*HFTokenizer, error) {
	var s synthJSON
	s.Model.Type = "BPE"
	s.Model.IgnoreMerges = true
	s.Model.Vocab = make(map[string]int64)
	byRank := map[int64]string{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		tok, rankStr, ok := strings.Cut(line, " ")
		raw, err := base64.StdEncoding.DecodeString(tok)
		if !ok || err != nil {
			return nil, fmt.Errorf("line %d: want \"base64 rank\"", n+1)
		}
		rank, err := strconv.ParseInt(rankStr, 10, 32)
		if err != nil || rank < 0 {
			return nil, fmt.Errorf("line %d: bad rank %q", n+1, rankStr)
		}
		bl := byteLevelString(string(raw))
		if _, dup := s.Model.Vocab[bl]; dup {
			return nil, fmt.Errorf("line %d: duplicate token", n+1)
		}
		s.Model.Vocab[bl] = rank
		byRank[rank] = bl
	}
	if len(s.Model.Vocab) == 0 {
		return nil, errors.New("no tokens")
	}
	added, err := configAddedTokens(side)
	if err != nil {
		return nil, err
	}
	if added == nil {
		base := len(s.Model.Vocab)
		added = []addedToken{
			{ID: base, Content: "<|begin_of_text|>", Special: true},
			{ID: base + 1, Content: "<|end_of_text|>", Special: true},
		}
	}
	s.AddedTokens = added
	s.PreTokenizer = splitThenByteLevel(llama3Pattern)
	s.Decoder = obj{"type": "ByteLevel"}
	for _, a := range added {
		if a.Content == "<|begin_of_text|>" {
			// Llama-3's tokenizer.json template prepends BOS.
			s.PostProcessor = obj{"type": "TemplateProcessing",
				"single":         []any{obj{"SpecialToken": obj{"id": a.Content, "type_id": 0}}, obj{"Sequence": obj{"id": "A", "type_id": 0}}},
				"special_tokens": obj{a.Content: obj{"id": a.Content, "ids": []int{a.ID}, "tokens": []string{a.Content}}}}
		}
	}
	t, err := parseSynth(&s, side)
	if err != nil {
		return nil, err
	}
	// tiktoken merges the pair whose concatenation has the lowest rank, so
	// every split of a token into two tokens is a merge ranked by the token.
	ranks := make([]int64, 0, len(byRank))
	for r := range byRank {
		ranks = append(ranks, r)
	}
	sort.Slice(ranks, func(i, j int) bool { return ranks[i] < ranks[j] })
	m := t.model
	for _, r := range ranks {
		tok := byRank[r]
		for i := range tok {
			if i == 0 {
				continue
			}
			a, okA := m.vocab[tok[:i]]
			b, okB := m.vocab[tok[i:]]
			if okA && okB {
				m.addMerge(a, b, int32(r), int32(r))
			}
		}
	}
	return t, nil
}
