package dist

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Inputs live in the object store under the SHA-256 of their bytes, so
// the same model or database is uploaded once whatever run uses it, and a
// worker fetches each once and keeps it on its disk.

// putFile uploads the file at path (unless the store has it) and returns
// its name.
func (c *Conn) putFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	name := hex.EncodeToString(h.Sum(nil))
	if _, err := c.Inputs.GetInfo(ctx, name); err == nil {
		return name, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if _, err := c.Inputs.Put(ctx, jetstream.ObjectMeta{Name: name}, f); err != nil {
		return "", fmt.Errorf("upload of %s: %w", path, err)
	}
	return name, nil
}

// putBytes uploads b (unless present) and returns its name.
func (c *Conn) putBytes(ctx context.Context, b []byte) (string, error) {
	h := sha256.Sum256(b)
	name := hex.EncodeToString(h[:])
	if _, err := c.Inputs.GetInfo(ctx, name); err == nil {
		return name, nil
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", err
	}
	if _, err := c.Inputs.PutBytes(ctx, name, b); err != nil {
		return "", err
	}
	return name, nil
}

// fetch returns the path of input name in cache, downloading it the first
// time and checking its hash.
func (c *Conn) fetch(ctx context.Context, name, cache string) (string, error) {
	path := filepath.Join(cache, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("worker cache: %w", err)
	}
	r, err := c.Inputs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", fmt.Errorf("input %s is missing from the object store %s (the coordinator uploads it; was the queue's store wiped?)", short(name), InputsBucket)
	}
	if err != nil {
		return "", fmt.Errorf("input %s: %w", short(name), err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(cache, name+".part-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		tmp.Close()
		return "", fmt.Errorf("input %s: download: %w", short(name), err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != name {
		return "", fmt.Errorf("input %s: downloaded bytes hash to %s", short(name), short(got))
	}
	return path, os.Rename(tmp.Name(), path)
}

func short(h string) string { return h[:min(12, len(h))] }

// tarDir writes the regular files under dir into a tar file with fixed
// metadata and sorted names, so equal folders give equal bytes.
func tarDir(dir, out string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, name := range files {
		src, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			f.Close()
			return err
		}
		st, _ := src.Stat()
		err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		if err == nil {
			_, err = io.Copy(tw, src)
		}
		src.Close()
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// untar unpacks a tarDir file into dir (made fresh through a temporary
// folder, so a half-unpacked folder never stands at dir).
func untar(path, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".part-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		name := filepath.FromSlash(h.Name)
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(filepath.Clean(name), "..") || filepath.IsAbs(name) {
			return fmt.Errorf("%s: unexpected entry %q", path, h.Name)
		}
		dst := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		w, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dir)
}
