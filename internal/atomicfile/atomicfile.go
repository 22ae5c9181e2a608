// Package atomicfile writes files so that a crash or a kill never leaves a
// half-written output under the final name: data goes to a temporary file
// in the same directory, is fsynced, and is renamed into place.
package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

var umask = sync.OnceValue(func() os.FileMode {
	// Linux reports the umask in /proc/self/status; reading it, unlike
	// syscall.Umask, does not change it under other goroutines' feet.
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range bytes.Split(b, []byte("\n")) {
			if v, ok := bytes.CutPrefix(l, []byte("Umask:")); ok {
				if u, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32); err == nil {
					return os.FileMode(u) & 0o777
				}
			}
		}
	}
	return 0o022
})

// FileMode is the mode os.Create would give a new file (0666 less the
// umask). os.CreateTemp makes 0600 files; outputs are chmodded to this so
// that they look like every other tool's files.
func FileMode() os.FileMode { return 0o666 &^ umask() }

// DirMode is the mode os.Mkdir(dir, 0777) would give (os.MkdirTemp makes 0700).
func DirMode() os.FileMode { return 0o777 &^ umask() }

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if err := tmp.Chmod(FileMode()); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// WriteSync creates path with data and fsyncs it. Use it for files inside a
// temporary directory that is itself renamed into place.
func WriteSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncDir fsyncs a directory, making renames inside it durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
