package data

import (
	"path/filepath"
	"reflect"
	"testing"
)

// hubRow mimics the hub's parquet exports, where every column (and list
// element) is optional.
type hubChoices struct {
	Text  []*string `parquet:"text,optional,list" parquet-element:",optional"`
	Label []*string `parquet:"label,optional,list" parquet-element:",optional"`
}

type hubRow struct {
	ID      *string     `parquet:"id,optional"`
	Choices *hubChoices `parquet:"choices,optional"`
	Label   *int64      `parquet:"label,optional"`
	Endings []*string   `parquet:"endings,optional,list" parquet-element:",optional"`
}

func TestHubStyleOptional(t *testing.T) {
	s := func(x string) *string { return &x }
	i := func(x int64) *int64 { return &x }
	p := filepath.Join(t.TempDir(), "0000.parquet")
	writeParquet(t, p, []hubRow{
		{ID: s("q1"), Choices: &hubChoices{Text: []*string{s("a"), s("b")}, Label: []*string{s("A"), s("B")}}, Label: i(1), Endings: []*string{s("x"), s("y")}},
		{ID: nil, Choices: nil, Label: nil, Endings: nil},
	})
	cols, rows, err := ReadRows(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cols, []string{"id", "choices", "label", "endings"}) {
		t.Errorf("cols %v", cols)
	}
	r := rows[0]
	if r["id"] != "q1" || r["label"] != int64(1) || !reflect.DeepEqual(r["endings"], []string{"x", "y"}) ||
		!reflect.DeepEqual(r["choices"], map[string]any{"text": []string{"a", "b"}, "label": []string{"A", "B"}}) {
		t.Errorf("row 0 = %#v", r)
	}
	if rows[1]["id"] != nil || rows[1]["label"] != nil {
		t.Errorf("row 1 = %#v", rows[1])
	}
}
