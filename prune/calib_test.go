package prune

import (
	"slices"
	"strings"
	"testing"
)

// byteTok tokenizes one token per byte (id = byte value).
type byteTok struct{}

func (byteTok) Encode(s string) []int {
	out := make([]int, len(s))
	for i := range s {
		out[i] = int(s[i])
	}
	return out
}
func (byteTok) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, v := range ids {
		b[i] = byte(v)
	}
	return string(b)
}
func (byteTok) VocabSize() int { return 256 }
func (byteTok) BOS() int       { return -1 }
func (byteTok) EOS() int       { return -1 }
func (byteTok) AddBOS() bool   { return false }

func TestSampleSequencesFirst(t *testing.T) {
	docs := []string{"abcdefg", "hij", "klmnopqrstuvwxyz"}
	seqs, err := SampleSequences(docs, byteTok{}, 11, 4, "first", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, s := range seqs {
		got = append(got, byteTok{}.Decode(s))
	}
	// "abcdefg\n\nhij..." : 11 tokens -> two windows of 4, tail dropped.
	if want := []string{"abcd", "efg\n"}; !slices.Equal(got, want) {
		t.Errorf("first: %q, want %q", got, want)
	}
	if _, err := SampleSequences([]string{"abc"}, byteTok{}, 8, 4, "first", 0); err == nil || !strings.Contains(err.Error(), "shorter than one window") {
		t.Errorf("short text: %v", err)
	}
	if _, err := SampleSequences(docs, byteTok{}, 100, 4, "first", 0); err == nil {
		t.Errorf("too few tokens accepted")
	}
	if _, err := SampleSequences(docs, byteTok{}, 10, 4, "middle", 0); err == nil {
		t.Errorf("unknown sampler accepted")
	}
}

func TestSampleSequencesRandom(t *testing.T) {
	var docs []string
	for i := 0; i < 20; i++ {
		docs = append(docs, strings.Repeat(string(rune('a'+i)), 3+i))
	}
	seqs, err := SampleSequences(docs, byteTok{}, 100, 8, "random", 1)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	var joined strings.Builder
	prevDoc, prevLen := byte(0), 0
	for _, s := range seqs {
		if len(s) == 0 || len(s) > 8 {
			t.Fatalf("sequence length %d", len(s))
		}
		total += len(s)
		txt := byteTok{}.Decode(s)
		if strings.Trim(txt, txt[:1]) != "" {
			t.Fatalf("sequence %q mixes documents", txt)
		}
		// Pieces of one document are consecutive and full except the last.
		if txt[0] == prevDoc && prevLen != 8 {
			t.Errorf("document %c split into a short piece before another", txt[0])
		}
		prevDoc, prevLen = txt[0], len(s)
		joined.WriteString(txt)
	}
	if total != 100 {
		t.Errorf("total %d tokens, want exactly 100", total)
	}
	// Each document appears once, whole (except the last, truncated), in one run.
	runs := map[byte]int{}
	j := joined.String()
	for i := 0; i < len(j); {
		k := i
		for k < len(j) && j[k] == j[i] {
			k++
		}
		if runs[j[i]] > 0 {
			t.Errorf("document %c appears twice", j[i])
		}
		runs[j[i]] = k - i
		if want := 3 + int(j[i]-'a'); k < len(j) && k-i != want {
			t.Errorf("document %c: %d tokens, want %d", j[i], k-i, want)
		}
		i = k
	}
	again, _ := SampleSequences(docs, byteTok{}, 100, 8, "random", 1)
	other, _ := SampleSequences(docs, byteTok{}, 100, 8, "random", 2)
	if !slices.EqualFunc(seqs, again, slices.Equal) {
		t.Errorf("same seed, different sequences")
	}
	if slices.EqualFunc(seqs, other, slices.Equal) {
		t.Errorf("different seeds, same sequences")
	}
	if _, err := SampleSequences(docs, byteTok{}, 10000, 8, "random", 1); err == nil {
		t.Errorf("too few tokens accepted")
	}
}
