// Package data reads text corpora and evaluation rows from Hugging Face
// dataset ids (through package hub), local parquet files or folders of parquet
// shards, JSON-lines files and plain text files.
package data

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/darwinlm/darwinlm-go/hub"
)

// DatasetPrefix marks a hub dataset spec: hf-dataset:ORG/NAME/CONFIG/SPLIT.
const DatasetPrefix = "hf-dataset:"

// Resolve turns a spec into local files: a hub dataset id is resolved through
// hub.ResolveDataset; a folder becomes its *.parquet files in sorted order
// (searched recursively); anything else is returned as is.
func Resolve(spec string) ([]string, error) {
	path := spec
	if strings.HasPrefix(spec, DatasetPrefix) {
		p, err := hub.ResolveDataset(spec)
		if err != nil {
			return nil, err
		}
		path = p
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(strings.ToLower(d.Name()), ".parquet") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("data: folder %s holds no .parquet files", path)
	}
	sort.Strings(files)
	return files, nil
}

// ReadTexts returns the documents of spec: the `text` column of parquet
// files, the `text` field of JSON lines, or a whole text file as one document.
// A trailing document range in Python slice form selects part of it:
// "SPEC[a:b]" keeps documents a..b-1, "SPEC[:b]" the first b, "SPEC[a:]" all
// from a (e.g. a training part and a held-out part of one dataset).
func ReadTexts(spec string) ([]string, error) {
	base, lo, hi, ranged, err := splitRange(spec)
	if err != nil {
		return nil, err
	}
	docs, err := readTexts(base)
	if err != nil || !ranged {
		return docs, err
	}
	if hi < 0 || hi > len(docs) {
		hi = len(docs)
	}
	if lo > hi {
		return nil, fmt.Errorf("data: %s: range [%d:%d] is empty (%d documents)", base, lo, hi, len(docs))
	}
	return docs[lo:hi], nil
}

// splitRange parses an optional trailing "[a:b]" document range.
func splitRange(spec string) (base string, lo, hi int, ranged bool, err error) {
	if !strings.HasSuffix(spec, "]") {
		return spec, 0, -1, false, nil
	}
	i := strings.LastIndex(spec, "[")
	if i < 0 {
		return spec, 0, -1, false, nil
	}
	a, b, ok := strings.Cut(spec[i+1:len(spec)-1], ":")
	if !ok {
		return "", 0, 0, false, fmt.Errorf("data: %q: a document range is written [a:b], [a:] or [:b]", spec)
	}
	lo, hi = 0, -1
	if a != "" {
		if lo, err = strconv.Atoi(a); err != nil || lo < 0 {
			return "", 0, 0, false, fmt.Errorf("data: %q: bad range start %q", spec, a)
		}
	}
	if b != "" {
		if hi, err = strconv.Atoi(b); err != nil || hi < 0 {
			return "", 0, 0, false, fmt.Errorf("data: %q: bad range end %q", spec, b)
		}
	}
	return spec[:i], lo, hi, true, nil
}

func readTexts(spec string) ([]string, error) {
	files, err := Resolve(spec)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		switch kindOf(f) {
		case kindParquet:
			cols, rows, err := readParquet(f, "text")
			if err != nil {
				return nil, err
			}
			_ = cols
			for i, r := range rows {
				s, ok := r["text"].(string)
				if !ok && r["text"] != nil {
					return nil, fmt.Errorf("data: %s: row %d: column text is %T, not a string", f, i, r["text"])
				}
				if at := InvalidUTF8(s); at >= 0 {
					return nil, fmt.Errorf("data: %s: row %d: column text is not valid UTF-8 (at byte %d of the value)", f, i, at)
				}
				out = append(out, s)
			}
		case kindJSONL:
			_, rows, err := readJSONL(f)
			if err != nil {
				return nil, err
			}
			for i, r := range rows {
				v, ok := r["text"]
				if !ok {
					return nil, fmt.Errorf("data: %s: line %d has no field \"text\"", f, i+1)
				}
				s, ok := v.(string)
				if !ok && v != nil {
					return nil, fmt.Errorf("data: %s: line %d: field text is %T, not a string", f, i+1, v)
				}
				out = append(out, s)
			}
		default:
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("data: %w", err)
			}
			if err := checkText(f, b); err != nil {
				return nil, err
			}
			out = append(out, string(b))
		}
	}
	return out, nil
}

// ReadRows reads generic rows from parquet files (or a folder of shards, or a
// hub dataset id) or a JSON-lines file. cols lists the top-level columns in
// schema (or first-seen) order. Values are normalised: strings stay strings,
// all integers become int64, floats float64, lists of strings []string, other
// lists []any, structs map[string]any, nulls nil.
func ReadRows(spec string) (cols []string, rows []map[string]any, err error) {
	files, err := Resolve(spec)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		var c []string
		var r []map[string]any
		switch kindOf(f) {
		case kindParquet:
			c, r, err = readParquet(f, "")
		case kindJSONL:
			c, r, err = readJSONL(f)
		default:
			return nil, nil, fmt.Errorf("data: %s: ReadRows needs a .parquet or .jsonl file", f)
		}
		if err != nil {
			return nil, nil, err
		}
		if cols == nil {
			cols = c
		} else if !slices.Equal(cols, c) {
			return nil, nil, fmt.Errorf("data: %s: columns %v differ from the first shard's %v", f, c, cols)
		}
		rows = append(rows, r...)
	}
	return cols, rows, nil
}

type fileKind int

const (
	kindText fileKind = iota
	kindParquet
	kindJSONL
)

func kindOf(path string) fileKind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet":
		return kindParquet
	case ".jsonl", ".ndjson":
		return kindJSONL
	}
	return kindText
}

// readParquet reads every row of a parquet file. When need is not empty it is
// a column that must exist, and only that column is returned in each row.
func readParquet(path, need string) (cols []string, rows []map[string]any, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("data: %s: reading parquet failed: %v", path, r)
		}
	}()
	if err := checkParquetFrame(f, st.Size()); err != nil {
		return nil, nil, fmt.Errorf("data: %s: not a readable parquet file: %w", path, err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("data: %s: not a readable parquet file: %w", path, err)
	}
	schema := pf.Schema()
	fields := schema.Fields()
	for _, fl := range fields {
		cols = append(cols, fl.Name())
	}
	if need != "" {
		found := false
		for _, c := range cols {
			if c == need {
				found = true
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("data: %s has no column %q (columns: %s)", path, need, strings.Join(cols, ", "))
		}
	}
	nodes := map[string]parquet.Node{}
	for _, fl := range fields {
		nodes[fl.Name()] = fl
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	rows = make([]map[string]any, 0, pf.NumRows())
	buf := make([]parquet.Row, 128)
	for {
		n, rerr := r.ReadRows(buf)
		for i := 0; i < n; i++ {
			m := map[string]any{}
			if err := schema.Reconstruct(&m, buf[i]); err != nil {
				return nil, nil, fmt.Errorf("data: %s: row %d: %w", path, len(rows), err)
			}
			out := make(map[string]any, len(m))
			for k, v := range m {
				if need != "" && k != need {
					continue
				}
				nv, err := normalize(v, nodes[k])
				if err != nil {
					return nil, nil, fmt.Errorf("data: %s: row %d: column %s: %w", path, len(rows), k, err)
				}
				out[k] = nv
			}
			rows = append(rows, out)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, nil, fmt.Errorf("data: %s: row %d: %w", path, len(rows), rerr)
		}
		if n == 0 {
			break
		}
	}
	if int64(len(rows)) != pf.NumRows() {
		return nil, nil, fmt.Errorf("data: %s: read %d rows, the footer says %d", path, len(rows), pf.NumRows())
	}
	if need != "" {
		cols = []string{need}
	}
	return cols, rows, nil
}

// listElem returns the element node of a LIST-annotated group (3-level or
// 2-level form), or nil.
func listElem(n parquet.Node) parquet.Node {
	if n == nil || n.Leaf() {
		return nil
	}
	lt := n.Type().LogicalType()
	if lt == nil {
		return nil
	}
	if _, ok := lt.Value.(*format.ListType); !ok {
		return nil
	}
	f := n.Fields()
	if len(f) != 1 {
		return nil
	}
	inner := f[0]
	if !inner.Leaf() && len(inner.Fields()) == 1 {
		return inner.Fields()[0]
	}
	return inner
}

func isStringNode(n parquet.Node) bool {
	if n == nil || !n.Leaf() {
		return false
	}
	if lt := n.Type().LogicalType(); lt != nil {
		switch lt.Value.(type) {
		case *format.StringType, *format.EnumType, *format.JsonType:
			return true
		}
	}
	return n.Type().Kind() == parquet.ByteArray
}

// normalize maps what Schema.Reconstruct produced into the documented types.
// node is the schema node of the value (nil when unknown).
func normalize(v any, node parquet.Node) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case bool:
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var child parquet.Node
			if node != nil && !node.Leaf() {
				for _, f := range node.Fields() {
					if f.Name() == k {
						child = f
					}
				}
			}
			ne, err := normalize(e, child)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = ne
		}
		return out, nil
	case []any:
		elem := listElem(node)
		if elem == nil && node != nil && node.Leaf() {
			elem = node // a repeated leaf
		}
		allStr := isStringNode(elem)
		out := make([]any, len(x))
		for i, e := range x {
			ne, err := normalize(e, elem)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = ne
			if _, ok := ne.(string); !ok {
				allStr = false
			}
		}
		if elem == nil && len(x) > 0 {
			allStr = true
			for _, e := range out {
				if _, ok := e.(string); !ok {
					allStr = false
				}
			}
		}
		if allStr {
			s := make([]string, len(out))
			for i, e := range out {
				s[i] = e.(string)
			}
			return s, nil
		}
		return out, nil
	}
	// Typed slices or maps from the reconstruction: walk them by reflection.
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		a := make([]any, rv.Len())
		for i := range a {
			a[i] = rv.Index(i).Interface()
		}
		return normalize(a, node)
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			m := make(map[string]any, rv.Len())
			for it := rv.MapRange(); it.Next(); {
				m[it.Key().String()] = it.Value().Interface()
			}
			return normalize(m, node)
		}
	case reflect.Pointer:
		if rv.IsNil() {
			return nil, nil
		}
		return normalize(rv.Elem().Interface(), node)
	}
	return v, nil
}

// readJSONL reads a JSON-lines file; blank lines are skipped. Columns are the
// keys in first-seen order.
func readJSONL(path string) (cols []string, rows []map[string]any, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	br := bufio.NewReaderSize(f, 1<<20)
	line := 0
	var offset int64
	for {
		b, rerr := br.ReadBytes('\n')
		if len(b) > 0 {
			line++
			if at := InvalidUTF8(string(b)); at >= 0 {
				return nil, nil, fmt.Errorf("data: %s: line %d is not valid UTF-8 (at byte %d of the file)", path, line, offset+int64(at))
			}
			offset += int64(len(b))
			b = bytes.TrimSpace(b)
			if len(b) > 0 {
				keys, m, err := decodeObject(b)
				if err != nil {
					return nil, nil, fmt.Errorf("data: %s: line %d: %w", path, line, err)
				}
				for _, k := range keys {
					if !seen[k] {
						seen[k] = true
						cols = append(cols, k)
					}
				}
				rows = append(rows, m)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, nil, fmt.Errorf("data: %s: %w", path, rerr)
		}
	}
	return cols, rows, nil
}

// decodeObject decodes one JSON object, returning its keys in order.
func decodeObject(b []byte) ([]string, map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	var keys []string
	m := map[string]any{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := kt.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", k, err)
		}
		if _, dup := m[k]; !dup {
			keys = append(keys, k)
		}
		m[k] = jsonNormalize(v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, errors.New("trailing data after the JSON object")
	}
	return keys, m, nil
}

func jsonNormalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		allStr := len(x) > 0
		for i := range x {
			x[i] = jsonNormalize(x[i])
			if _, ok := x[i].(string); !ok {
				allStr = false
			}
		}
		if allStr {
			s := make([]string, len(x))
			for i := range x {
				s[i] = x[i].(string)
			}
			return s
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = jsonNormalize(e)
		}
		return x
	}
	return v
}

// checkText rejects a plain-text file that is not text: invalid UTF-8 or a
// NUL byte (a binary file would otherwise be scored as text).
func checkText(path string, b []byte) error {
	if at := InvalidUTF8(string(b)); at >= 0 {
		return fmt.Errorf("data: %s is not valid UTF-8 text (at byte %d); give a text, .jsonl or .parquet file", path, at)
	}
	if at := bytes.IndexByte(b, 0); at >= 0 {
		return fmt.Errorf("data: %s is not a text file (NUL byte at byte %d); give a text, .jsonl or .parquet file", path, at)
	}
	return nil
}

// InvalidUTF8 is the byte offset of the first invalid UTF-8 sequence in s,
// or -1 when s is valid.
func InvalidUTF8(s string) int {
	if utf8.ValidString(s) {
		return -1
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// checkParquetFrame checks the magic numbers and that the footer length fits
// in the file, before the parquet library allocates a buffer of the length
// the file claims (a corrupt length made it allocate gigabytes).
func checkParquetFrame(r io.ReaderAt, size int64) error {
	const magic = "PAR1"
	if size < 12 {
		return fmt.Errorf("%d bytes, shorter than a parquet file's framing", size)
	}
	var head [4]byte
	var tail [8]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return err
	}
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	if string(head[:]) != magic || string(tail[4:]) != magic {
		return errors.New("no PAR1 magic number at the start and end")
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-12 {
		return fmt.Errorf("footer length %d exceeds the file's %d bytes", n, size)
	}
	return nil
}
