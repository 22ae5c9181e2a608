package eval

import (
	"strings"

	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/hub"
)

// RowReader reads a dataset: spec is hf-dataset:ORG/NAME/CONFIG/SPLIT or a
// local .parquet / .jsonl file. It returns the column names, the rows, and
// the path of the file that was read (for error messages).
type RowReader func(spec string) (cols []string, rows []map[string]any, path string, err error)

// ReadRows is the reader used when no other is given: data.ReadRows, with
// the path resolved by hub.ResolveDataset.
var ReadRows RowReader = func(spec string) ([]string, []map[string]any, string, error) {
	path := spec
	if strings.HasPrefix(spec, data.DatasetPrefix) {
		p, err := hub.ResolveDataset(spec)
		if err != nil {
			return nil, nil, spec, err
		}
		path = p
	}
	cols, rows, err := data.ReadRows(path)
	return cols, rows, path, err
}

// normList turns a []any of strings into []string.
func normList(l []any) any {
	s := make([]string, len(l))
	for i, x := range l {
		str, ok := x.(string)
		if !ok {
			return l
		}
		s[i] = str
	}
	return s
}
