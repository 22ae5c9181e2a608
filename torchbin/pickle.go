package torchbin

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// The unpickler is a small stack machine over the opcodes torch.save emits
// for a state dict (pickle protocol 2, plus the few protocol 3-5 opcodes a
// caller's pickle_protocol may add). It never imports or calls anything:
// GLOBAL / STACK_GLOBAL resolve only names of the allow-list to inert
// markers, and REDUCE applies only those markers. Anything else is an error
// naming the opcode or global.

// Limits that bound what a hostile data.pkl can make the unpickler allocate.
const (
	maxStack = 1 << 20 // values on the stack (all marks together)
	maxMemo  = 1 << 20 // memo entries
	maxDims  = 64      // tensor rank
)

type pyGlobal struct{ module, name string }

func (g pyGlobal) String() string { return g.module + "." + g.name }

// pyDict keeps insertion order; keys are kept as found.
type pyDict struct {
	keys, vals []any
}

type pyList struct{ items []any }

type pyTuple []any

type mark struct{}

// storageRef is the value of a BINPERSID ('storage', type, key, location, numel).
type storageRef struct {
	dtype storageType
	key   string
	numel int64
}

// tensorRef is the result of torch._utils._rebuild_tensor_v2.
type tensorRef struct {
	st     storageRef
	offset int64
	size   []int64
	stride []int64
}

// storageType is a torch.*Storage class: its dtype and element size.
type storageType struct {
	name  string
	dtype string // safetensors dtype name
	size  int64
}

var storageTypes = map[string]storageType{}

func init() {
	for _, s := range []storageType{
		{"FloatStorage", "F32", 4}, {"HalfStorage", "F16", 2}, {"BFloat16Storage", "BF16", 2},
		{"DoubleStorage", "F64", 8}, {"LongStorage", "I64", 8}, {"IntStorage", "I32", 4},
		{"ShortStorage", "I16", 2}, {"CharStorage", "I8", 1}, {"ByteStorage", "U8", 1},
		{"BoolStorage", "BOOL", 1},
	} {
		storageTypes[s.name] = s
	}
}

// allowed reports whether a global may be named by the pickle.
func allowed(g pyGlobal) bool {
	switch g.String() {
	case "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter":
		return true
	}
	if g.module == "torch" {
		_, ok := storageTypes[g.name]
		return ok
	}
	return false
}

type unpickler struct {
	name  string // file and entry, for errors
	b     []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
	items int // values created, bounded by maxStack*4
}

func (u *unpickler) errf(format string, a ...any) error {
	return fmt.Errorf("torchbin: %s: byte %d: %s", u.name, u.pos, fmt.Sprintf(format, a...))
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.b)-u.pos {
		return nil, u.errf("pickle truncated (need %d bytes, %d left)", n, len(u.b)-u.pos)
	}
	s := u.b[u.pos : u.pos+n]
	u.pos += n
	return s, nil
}

func (u *unpickler) push(v any) error {
	if len(u.stack) >= maxStack {
		return u.errf("pickle stack exceeds %d values", maxStack)
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errf("pickle stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) <= u.marks[len(u.marks)-1]) {
		return nil, u.errf("pickle stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark pops the values above the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("pickle needs a MARK that is not there")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	vals := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return vals, nil
}

func (u *unpickler) line() (string, error) {
	i := strings.IndexByte(string(u.b[u.pos:min(len(u.b), u.pos+256)]), '\n')
	if i < 0 {
		return "", u.errf("GLOBAL name not terminated within 256 bytes")
	}
	s := string(u.b[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) global(module, name string) error {
	g := pyGlobal{module, name}
	if !allowed(g) {
		return u.errf("global %s is not allowed (only collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.*Storage types are)", g)
	}
	return u.push(g)
}

func (u *unpickler) memoPut(idx uint32) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if _, ok := u.memo[idx]; !ok && len(u.memo) >= maxMemo {
		return u.errf("pickle memo exceeds %d entries", maxMemo)
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) memoGet(idx uint32) error {
	v, ok := u.memo[idx]
	if !ok {
		return u.errf("memo entry %d is not defined", idx)
	}
	return u.push(v)
}

// opNames names opcodes in errors.
var opNames = map[byte]string{
	'c': "GLOBAL", 'i': "INST", 'o': "OBJ", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 'R': "REDUCE", 'b': "BUILD",
	'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING", 'V': "UNICODE", 'I': "INT", 'L': "LONG", 'F': "FLOAT",
	'P': "PERSID", 'Q': "BINPERSID", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 'B': "BINBYTES", 'C': "SHORT_BINBYTES",
	0x8e: "BINBYTES8", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x8b: "LONG4",
	0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 'd': "DICT", 'l': "LIST", '0': "POP", '1': "POP_MARK", '2': "DUP",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("0x%02x", op)
}

// unpickle runs the machine and returns the value STOP pops.
func unpickle(name string, b []byte) (any, error) {
	u := &unpickler{name: name, b: b, memo: map[uint32]any{}}
	for {
		if u.pos >= len(b) {
			return nil, u.errf("pickle ends without STOP")
		}
		op := b[u.pos]
		u.pos++
		u.items++
		if u.items > 4*maxStack+len(b) {
			return nil, u.errf("pickle too long")
		}
		var err error
		switch op {
		case 0x80: // PROTO
			var p []byte
			if p, err = u.read(1); err == nil && p[0] > 5 {
				err = u.errf("pickle protocol %d is not supported", p[0])
			}
		case 0x95: // FRAME: the frame length is only a hint
			_, err = u.read(8)
		case '.': // STOP
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case '}':
			err = u.push(&pyDict{})
		case ']':
			err = u.push(&pyList{})
		case ')':
			err = u.push(pyTuple{})
		case '(': // MARK
			if len(u.marks) >= maxStack {
				err = u.errf("too many MARKs")
			} else {
				u.marks = append(u.marks, len(u.stack))
			}
		case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
			var n uint64
			switch op {
			case 'X':
				var l []byte
				if l, err = u.read(4); err == nil {
					n = uint64(binary.LittleEndian.Uint32(l))
				}
			case 0x8c:
				var l []byte
				if l, err = u.read(1); err == nil {
					n = uint64(l[0])
				}
			default:
				var l []byte
				if l, err = u.read(8); err == nil {
					n = binary.LittleEndian.Uint64(l)
				}
			}
			if err == nil {
				if n > uint64(len(b)-u.pos) {
					err = u.errf("string of %d bytes runs past the pickle's end", n)
				} else {
					var s []byte
					s, _ = u.read(int(n))
					err = u.push(string(s))
				}
			}
		case 'q', 'r': // BINPUT, LONG_BINPUT
			var idx uint32
			if idx, err = u.memoIndex(op == 'q'); err == nil {
				err = u.memoPut(idx)
			}
		case 0x94: // MEMOIZE
			err = u.memoPut(uint32(len(u.memo)))
		case 'h', 'j': // BINGET, LONG_BINGET
			var idx uint32
			if idx, err = u.memoIndex(op == 'h'); err == nil {
				err = u.memoGet(idx)
			}
		case 'J': // BININT
			var l []byte
			if l, err = u.read(4); err == nil {
				err = u.push(int64(int32(binary.LittleEndian.Uint32(l))))
			}
		case 'K': // BININT1
			var l []byte
			if l, err = u.read(1); err == nil {
				err = u.push(int64(l[0]))
			}
		case 'M': // BININT2
			var l []byte
			if l, err = u.read(2); err == nil {
				err = u.push(int64(binary.LittleEndian.Uint16(l)))
			}
		case 0x8a: // LONG1: little-endian two's complement of n bytes
			var l []byte
			if l, err = u.read(1); err == nil {
				n := int(l[0])
				if n > 8 {
					err = u.errf("LONG1 integer of %d bytes does not fit 64 bits", n)
				} else if l, err = u.read(n); err == nil {
					var v uint64
					for i := n - 1; i >= 0; i-- {
						v = v<<8 | uint64(l[i])
					}
					if n > 0 && n < 8 && l[n-1]&0x80 != 0 {
						v |= ^uint64(0) << (8 * n) // sign-extend
					}
					err = u.push(int64(v))
				}
			}
		case 'G': // BINFLOAT (big-endian)
			var l []byte
			if l, err = u.read(8); err == nil {
				err = u.push(math.Float64frombits(binary.BigEndian.Uint64(l)))
			}
		case 0x88:
			err = u.push(true)
		case 0x89:
			err = u.push(false)
		case 'N':
			err = u.push(nil)
		case 't': // TUPLE
			var vals []any
			if vals, err = u.popMark(); err == nil {
				err = u.push(pyTuple(vals))
			}
		case 0x85, 0x86, 0x87: // TUPLE1..3
			n := int(op - 0x84)
			t := make(pyTuple, n)
			for i := n - 1; i >= 0 && err == nil; i-- {
				t[i], err = u.pop()
			}
			if err == nil {
				err = u.push(t)
			}
		case 'c': // GLOBAL module\nname\n
			var mod, nm string
			if mod, err = u.line(); err == nil {
				if nm, err = u.line(); err == nil {
					err = u.global(mod, nm)
				}
			}
		case 0x93: // STACK_GLOBAL
			var nm, mod any
			if nm, err = u.pop(); err == nil {
				if mod, err = u.pop(); err == nil {
					ms, ok1 := mod.(string)
					ns, ok2 := nm.(string)
					if !ok1 || !ok2 {
						err = u.errf("STACK_GLOBAL needs two strings")
					} else {
						err = u.global(ms, ns)
					}
				}
			}
		case 'R': // REDUCE
			var args, fn any
			if args, err = u.pop(); err == nil {
				if fn, err = u.pop(); err == nil {
					var v any
					if v, err = u.reduce(fn, args); err == nil {
						err = u.push(v)
					}
				}
			}
		case 'b': // BUILD: only the state of an OrderedDict (its _metadata), ignored
			var state, obj any
			if state, err = u.pop(); err == nil {
				if obj, err = u.top(); err == nil {
					if _, ok := obj.(*pyDict); !ok {
						err = u.errf("BUILD on a %s; only an OrderedDict's state is accepted", typeName(obj))
					}
					_ = state
				}
			}
		case 's': // SETITEM
			var k, v, d any
			if v, err = u.pop(); err == nil {
				if k, err = u.pop(); err == nil {
					if d, err = u.top(); err == nil {
						err = u.setItems(d, []any{k, v})
					}
				}
			}
		case 'u': // SETITEMS
			var vals []any
			if vals, err = u.popMark(); err == nil {
				var d any
				if d, err = u.top(); err == nil {
					err = u.setItems(d, vals)
				}
			}
		case 'a': // APPEND
			var v, l any
			if v, err = u.pop(); err == nil {
				if l, err = u.top(); err == nil {
					err = u.appendItems(l, []any{v})
				}
			}
		case 'e': // APPENDS
			var vals []any
			if vals, err = u.popMark(); err == nil {
				var l any
				if l, err = u.top(); err == nil {
					err = u.appendItems(l, vals)
				}
			}
		case 'Q': // BINPERSID
			var pid any
			if pid, err = u.pop(); err == nil {
				var s storageRef
				if s, err = u.persistent(pid); err == nil {
					err = u.push(s)
				}
			}
		default:
			return nil, u.errf("pickle opcode %s is not supported by the safe unpickler", opName(op))
		}
		if err != nil {
			return nil, err
		}
	}
}

func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case string:
		return "str"
	case int64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case *pyDict:
		return "dict"
	case *pyList:
		return "list"
	case pyTuple:
		return "tuple"
	case pyGlobal:
		return v.String()
	case storageRef:
		return "storage"
	case *tensorRef:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

func (u *unpickler) setItems(d any, kv []any) error {
	dict, ok := d.(*pyDict)
	if !ok {
		return u.errf("SETITEM(S) on a %s, not a dict", typeName(d))
	}
	if len(kv)%2 != 0 {
		return u.errf("SETITEMS with an odd number of values")
	}
	for i := 0; i < len(kv); i += 2 {
		dict.keys = append(dict.keys, kv[i])
		dict.vals = append(dict.vals, kv[i+1])
	}
	return nil
}

func (u *unpickler) appendItems(l any, vals []any) error {
	list, ok := l.(*pyList)
	if !ok {
		return u.errf("APPEND(S) on a %s, not a list", typeName(l))
	}
	list.items = append(list.items, vals...)
	return nil
}

// persistent decodes ('storage', torch.XStorage, key, location, numel).
func (u *unpickler) persistent(pid any) (storageRef, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return storageRef{}, u.errf("persistent id is a %s, want ('storage', type, key, location, numel)", typeName(pid))
	}
	if s, ok := t[0].(string); !ok || s != "storage" {
		return storageRef{}, u.errf("persistent id kind %v is not 'storage'", t[0])
	}
	g, ok := t[1].(pyGlobal)
	st, known := storageTypes[g.name]
	if !ok || g.module != "torch" || !known {
		return storageRef{}, u.errf("persistent id storage type %s is not a torch storage type", typeName(t[1]))
	}
	key, ok := t[2].(string)
	if !ok || key == "" || strings.ContainsAny(key, "/\\") || strings.Contains(key, "..") {
		return storageRef{}, u.errf("persistent id has a bad storage key %v", t[2])
	}
	if _, ok := t[3].(string); !ok {
		return storageRef{}, u.errf("persistent id location is a %s, not a string", typeName(t[3]))
	}
	n, ok := t[4].(int64)
	if !ok || n < 0 {
		return storageRef{}, u.errf("persistent id of storage %s has a bad element count %v", key, t[4])
	}
	return storageRef{dtype: st, key: key, numel: n}, nil
}

func intTuple(v any) ([]int64, bool) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// reduce applies an allow-listed callable.
func (u *unpickler) reduce(fn, args any) (any, error) {
	g, ok := fn.(pyGlobal)
	if !ok {
		return nil, u.errf("REDUCE calls a %s, not an allowed global", typeName(fn))
	}
	a, ok := args.(pyTuple)
	if !ok {
		return nil, u.errf("REDUCE of %s with a %s, not a tuple of arguments", g, typeName(args))
	}
	switch g.String() {
	case "collections.OrderedDict":
		if len(a) != 0 {
			return nil, u.errf("collections.OrderedDict called with %d arguments, want 0", len(a))
		}
		return &pyDict{}, nil
	case "torch._utils._rebuild_tensor_v2":
		// (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
		if len(a) != 6 && len(a) != 7 {
			return nil, u.errf("_rebuild_tensor_v2 called with %d arguments, want 6 or 7", len(a))
		}
		st, ok := a[0].(storageRef)
		if !ok {
			return nil, u.errf("_rebuild_tensor_v2: storage is a %s", typeName(a[0]))
		}
		off, ok := a[1].(int64)
		if !ok || off < 0 {
			return nil, u.errf("_rebuild_tensor_v2: bad storage offset %v", a[1])
		}
		size, ok1 := intTuple(a[2])
		stride, ok2 := intTuple(a[3])
		if !ok1 || !ok2 || len(size) != len(stride) || len(size) > maxDims {
			return nil, u.errf("_rebuild_tensor_v2: size %v and stride %v are not integer tuples of one rank ≤ %d", a[2], a[3], maxDims)
		}
		return &tensorRef{st: st, offset: off, size: size, stride: stride}, nil
	case "torch._utils._rebuild_parameter":
		// (data, requires_grad, backward_hooks)
		if len(a) != 3 {
			return nil, u.errf("_rebuild_parameter called with %d arguments, want 3", len(a))
		}
		t, ok := a[0].(*tensorRef)
		if !ok {
			return nil, u.errf("_rebuild_parameter of a %s, not a tensor", typeName(a[0]))
		}
		return t, nil
	}
	return nil, u.errf("REDUCE may not call %s", g)
}

// memoIndex reads the memo index of a (LONG_)BINPUT or (LONG_)BINGET: one
// byte for the short forms, four little-endian bytes for the long ones.
func (u *unpickler) memoIndex(short bool) (uint32, error) {
	if short {
		l, err := u.read(1)
		if err != nil {
			return 0, err
		}
		return uint32(l[0]), nil
	}
	l, err := u.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(l), nil
}
