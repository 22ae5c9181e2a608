// Package hub resolves Hugging Face model and dataset ids to local files:
// first the read-only mirror named by $DARWINLM_HUB_MIRROR, then the Hugging
// Face cache ($HF_HOME/hub, default ~/.cache/huggingface/hub), then a
// download over HTTPS from $HF_ENDPOINT (default https://huggingface.co) into
// that cache, unless DARWINLM_OFFLINE=1.
//
// Model specs are hf:ORG/NAME[/SUBDIR]; dataset specs are
// hf-dataset:ORG/NAME/CONFIG/SPLIT (or hf-dataset:NAME/CONFIG/SPLIT for the
// old un-namespaced datasets such as super_glue).
package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"
)

const (
	ModelPrefix   = "hf:"
	DatasetPrefix = "hf-dataset:"
)

// Mirror returns the mirror root from $DARWINLM_HUB_MIRROR, or "" if unset. A
// relative value is taken relative to the working directory, or, when it does
// not exist there, relative to the module root (the nearest folder above the
// working directory holding go.mod), so tests run inside a package folder
// find the same mirror as the CLI run from the repository root.
func Mirror() string {
	m := os.Getenv("DARWINLM_HUB_MIRROR")
	if m == "" || filepath.IsAbs(m) {
		return m
	}
	if _, err := os.Stat(m); err == nil {
		abs, _ := filepath.Abs(m)
		return abs
	}
	if root := ModuleRoot(); root != "" {
		return filepath.Join(root, m)
	}
	return m
}

// ModuleRoot returns the nearest folder at or above the working directory
// that holds a go.mod file, or "".
func ModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// CacheDir is the hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
// ~/.cache/huggingface/hub.
func CacheDir() string {
	if c := os.Getenv("HF_HUB_CACHE"); c != "" {
		return c
	}
	home := os.Getenv("HF_HOME")
	if home == "" {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			home = filepath.Join(x, "huggingface")
		} else {
			h, err := os.UserHomeDir()
			if err != nil {
				h = "."
			}
			home = filepath.Join(h, ".cache", "huggingface")
		}
	}
	return filepath.Join(home, "hub")
}

// Endpoint is $HF_ENDPOINT without a trailing slash (default
// https://huggingface.co).
func Endpoint() string {
	e := os.Getenv("HF_ENDPOINT")
	if e == "" {
		e = "https://huggingface.co"
	}
	return strings.TrimRight(e, "/")
}

// Offline reports whether DARWINLM_OFFLINE (or HF_HUB_OFFLINE) forbids
// downloads.
func Offline() bool {
	for _, k := range []string{"DARWINLM_OFFLINE", "HF_HUB_OFFLINE"} {
		switch strings.ToLower(os.Getenv(k)) {
		case "1", "true", "yes", "on":
			return true
		}
	}
	return false
}

var partRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func checkParts(spec string, parts []string) error {
	for _, p := range parts {
		if !partRe.MatchString(p) || p == "." || p == ".." || strings.Contains(p, "..") {
			return fmt.Errorf("hub: bad id %q: component %q must be letters, digits, '.', '_' or '-'", spec, p)
		}
	}
	return nil
}

// ModelRef is a parsed hf: model spec.
type ModelRef struct {
	Repo   string // ORG/NAME
	Subdir string // optional folder inside the repo ("" for none)
}

// ParseModel parses "hf:ORG/NAME[/SUBDIR...]" (the prefix is optional).
func ParseModel(spec string) (ModelRef, error) {
	s := strings.TrimPrefix(spec, ModelPrefix)
	parts := strings.Split(strings.Trim(s, "/"), "/")
	if len(parts) < 2 {
		return ModelRef{}, fmt.Errorf("hub: bad model id %q: want hf:ORG/NAME[/SUBDIR]", spec)
	}
	if err := checkParts(spec, parts); err != nil {
		return ModelRef{}, err
	}
	return ModelRef{Repo: parts[0] + "/" + parts[1], Subdir: strings.Join(parts[2:], "/")}, nil
}

// DatasetRef is a parsed hf-dataset: spec.
type DatasetRef struct {
	Repo, Config, Split string
}

// ParseDataset parses "hf-dataset:ORG/NAME/CONFIG/SPLIT" or
// "hf-dataset:NAME/CONFIG/SPLIT" (the prefix is optional).
func ParseDataset(spec string) (DatasetRef, error) {
	s := strings.TrimPrefix(spec, DatasetPrefix)
	parts := strings.Split(strings.Trim(s, "/"), "/")
	if len(parts) != 3 && len(parts) != 4 {
		return DatasetRef{}, fmt.Errorf("hub: bad dataset id %q: want hf-dataset:ORG/NAME/CONFIG/SPLIT", spec)
	}
	if err := checkParts(spec, parts); err != nil {
		return DatasetRef{}, err
	}
	n := len(parts)
	return DatasetRef{Repo: strings.Join(parts[:n-2], "/"), Config: parts[n-2], Split: parts[n-1]}, nil
}

func cacheRepoDir(kind, repo string) string {
	return filepath.Join(CacheDir(), kind+"--"+strings.ReplaceAll(repo, "/", "--"))
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// readRef returns the commit recorded in refs/<ref> of a cached repo, or "".
func readRef(repoDir, ref string) string {
	b, err := os.ReadFile(filepath.Join(repoDir, "refs", filepath.FromSlash(ref)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ResolveModel returns a local folder holding the model files of spec, or,
// when SUBDIR names a file (hf:karpathy/tinyllamas/stories260K/stories260K.bin),
// that file (with the other files of its folder fetched beside it).
func ResolveModel(spec string) (string, error) {
	ref, err := ParseModel(spec)
	if err != nil {
		return "", err
	}
	rel := filepath.FromSlash(path.Join(ref.Repo, ref.Subdir))
	if m := Mirror(); m != "" {
		p := filepath.Join(m, "models", rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	repoDir := cacheRepoDir("models", ref.Repo)
	if rev := readRef(repoDir, "main"); rev != "" && checkParts(spec, []string{rev}) == nil {
		p := filepath.Join(repoDir, "snapshots", rev, filepath.FromSlash(ref.Subdir))
		if modelComplete(p) || (ref.Subdir != "" && fileExists(p)) {
			return p, nil
		}
	}
	if Offline() {
		return "", fmt.Errorf("hub: model %s is neither in the mirror ($DARWINLM_HUB_MIRROR=%q) nor in the cache %s, and DARWINLM_OFFLINE=1 forbids downloading it", spec, os.Getenv("DARWINLM_HUB_MIRROR"), repoDir)
	}
	return downloadModel(spec, ref, repoDir)
}

// modelComplete reports whether a cached model folder looks usable: it has
// config.json or a llama2.c .bin checkpoint, and every file exists.
func modelComplete(dir string) bool {
	if !isDir(dir) {
		return false
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return true
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*.bin"))
	return len(m) > 0
}

// ResolveDataset returns a local parquet file, or a folder of parquet shards,
// holding the given config and split of a hub dataset.
func ResolveDataset(spec string) (string, error) {
	ref, err := ParseDataset(spec)
	if err != nil {
		return "", err
	}
	if m := Mirror(); m != "" {
		p := filepath.Join(m, "datasets", filepath.FromSlash(ref.Repo), ref.Config, ref.Split+".parquet")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	repoDir := cacheRepoDir("datasets", ref.Repo)
	for _, r := range []string{"convert/parquet", "main"} {
		rev := readRef(repoDir, r)
		if rev == "" || checkParts(spec, []string{rev}) != nil {
			continue
		}
		snap := filepath.Join(repoDir, "snapshots", rev)
		if p := filepath.Join(snap, ref.Config, ref.Split+".parquet"); fileExists(p) {
			return p, nil
		}
		if p := filepath.Join(snap, ref.Config, ref.Split); hasParquet(p) {
			return p, nil
		}
	}
	if Offline() {
		return "", fmt.Errorf("hub: dataset %s is neither in the mirror ($DARWINLM_HUB_MIRROR=%q) nor in the cache %s, and DARWINLM_OFFLINE=1 forbids downloading it", spec, os.Getenv("DARWINLM_HUB_MIRROR"), repoDir)
	}
	return downloadDataset(spec, ref, repoDir)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func hasParquet(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "*.parquet"))
	return len(m) > 0
}

// ---- downloading ----

// Client is the HTTP client used for downloads.
var Client = &http.Client{Timeout: 0, Transport: http.DefaultTransport}

type httpError struct {
	URL    string
	Status int
}

func (e *httpError) Error() string { return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.Status) }

func isNotFound(err error) bool {
	var he *httpError
	return errors.As(err, &he) && (he.Status == 404)
}

func get(u string) (*http.Response, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return nil, err
	}
	if tok := os.Getenv("HF_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("User-Agent", "darwinlm-go")
	resp, err := Client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, &httpError{URL: u, Status: resp.StatusCode}
	}
	return resp, nil
}

func getJSON(u string, v any) error {
	resp, err := get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: bad JSON: %w", u, err)
	}
	return nil
}

// download fetches u into dst through a temporary file and a rename. It
// returns the X-Repo-Commit header when the server sends one.
func download(u, dst string) (commit string, err error) {
	resp, err := get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".incomplete-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var w io.Writer = tmp
	var prog *progress
	if term.IsTerminal(int(os.Stderr.Fd())) {
		prog = &progress{name: path.Base(dst), total: resp.ContentLength, last: time.Now()}
		w = io.MultiWriter(tmp, prog)
	}
	n, err := io.Copy(w, resp.Body)
	if prog != nil {
		prog.done()
	}
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("GET %s: got %d bytes, Content-Length says %d", u, n, resp.ContentLength)
	}
	if err = tmp.Sync(); err != nil {
		return "", err
	}
	if err = tmp.Close(); err != nil {
		return "", err
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return resp.Header.Get("X-Repo-Commit"), nil
}

type progress struct {
	name  string
	total int64
	n     int64
	last  time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.print()
	}
	return len(b), nil
}

func (p *progress) print() {
	if p.total > 0 {
		fmt.Fprintf(os.Stderr, "\r%s: %.1f / %.1f MB (%d%%)", p.name, float64(p.n)/1e6, float64(p.total)/1e6, p.n*100/p.total)
	} else {
		fmt.Fprintf(os.Stderr, "\r%s: %.1f MB", p.name, float64(p.n)/1e6)
	}
}

func (p *progress) done() {
	p.print()
	fmt.Fprintln(os.Stderr)
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return strings.Join(parts, "/")
}

// optionalModelFiles are fetched when present; a 404 is fine.
var optionalModelFiles = []string{
	"generation_config.json", "tokenizer.json", "tokenizer_config.json",
	"special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
}

func writeRef(repoDir, ref, rev string) error {
	p := filepath.Join(repoDir, "refs", filepath.FromSlash(ref))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(rev), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

var revRe = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

func downloadModel(spec string, ref ModelRef, repoDir string) (string, error) {
	ep := Endpoint()
	// The model info lists the files and the commit; it is optional.
	var info struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			Name string `json:"rfilename"`
		} `json:"siblings"`
	}
	infoErr := getJSON(ep+"/api/models/"+escapePath(ref.Repo)+"/revision/main", &info)
	rev := info.SHA
	if infoErr != nil || !revRe.MatchString(rev) {
		rev = ""
	}
	// Stage into snapshots/<tmp> and rename when complete.
	snapRoot := filepath.Join(repoDir, "snapshots")
	if err := os.MkdirAll(snapRoot, 0o755); err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	stage, err := os.MkdirTemp(snapRoot, ".download-")
	if err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	defer os.RemoveAll(stage)
	resolve := func(file string) string {
		return ep + "/" + escapePath(ref.Repo) + "/resolve/main/" + escapePath(file)
	}
	fetch := func(file string) error {
		c, err := download(resolve(file), filepath.Join(stage, filepath.FromSlash(file)))
		if err == nil && rev == "" && revRe.MatchString(c) {
			rev = c
		}
		return err
	}
	prefix := ""
	if ref.Subdir != "" {
		prefix = ref.Subdir + "/"
	}
	if infoErr == nil && ref.Subdir != "" {
		for _, s := range info.Siblings {
			if s.Name == ref.Subdir {
				// The spec names a file: fetch its folder.
				prefix = path.Dir(ref.Subdir) + "/"
				if prefix == "./" {
					prefix = ""
				}
			}
		}
	}
	if infoErr == nil && len(info.Siblings) > 0 {
		// Fetch every listed file that a model folder needs: the
		// safetensors weights, or PyTorch's pytorch_model*.bin when the
		// folder has no safetensors file.
		hasST := false
		for _, s := range info.Siblings {
			if b, ok := strings.CutPrefix(s.Name, prefix); ok && !strings.Contains(b, "/") && strings.HasSuffix(b, ".safetensors") {
				hasST = true
			}
		}
		n := 0
		for _, s := range info.Siblings {
			if !strings.HasPrefix(s.Name, prefix) {
				continue
			}
			base := strings.TrimPrefix(s.Name, prefix)
			if !wantModelFile(base, prefix != "", hasST) && s.Name != ref.Subdir {
				continue
			}
			if err := fetch(s.Name); err != nil {
				return "", fmt.Errorf("hub: downloading %s: %w", spec, err)
			}
			n++
		}
		if n == 0 {
			return "", fmt.Errorf("hub: %s: the hub lists no model files under %q", spec, ref.Subdir)
		}
	} else if ref.Subdir != "" && path.Ext(ref.Subdir) == ".bin" {
		// No listing: fetch the named llama2.c checkpoint alone.
		if err := fetch(ref.Subdir); err != nil {
			return "", fmt.Errorf("hub: downloading %s: %w", spec, err)
		}
	} else {
		if err := fetch(prefix + "config.json"); err != nil {
			return "", fmt.Errorf("hub: downloading %s: config.json: %w", spec, err)
		}
		// The weights: model.safetensors, its index and shards, or
		// PyTorch's pytorch_model.bin, its index and shards, in that order.
		fetched := false
		var lastErr error
		for _, w := range [][2]string{
			{"model.safetensors", "model.safetensors.index.json"},
			{"pytorch_model.bin", "pytorch_model.bin.index.json"},
		} {
			err := fetch(prefix + w[0])
			if err == nil {
				fetched = true
				break
			}
			if !isNotFound(err) {
				return "", fmt.Errorf("hub: downloading %s: %s: %w", spec, w[0], err)
			}
			idx := prefix + w[1]
			if err := fetch(idx); err != nil {
				if !isNotFound(err) {
					return "", fmt.Errorf("hub: downloading %s: %s: %w", spec, w[1], err)
				}
				lastErr = err
				continue
			}
			shards, err := indexShards(filepath.Join(stage, filepath.FromSlash(idx)))
			if err != nil {
				return "", fmt.Errorf("hub: %s: %w", spec, err)
			}
			for _, s := range shards {
				if err := fetch(prefix + s); err != nil {
					return "", fmt.Errorf("hub: downloading %s: shard %s: %w", spec, s, err)
				}
			}
			fetched = true
			break
		}
		if !fetched {
			return "", fmt.Errorf("hub: downloading %s: none of model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json: %w", spec, lastErr)
		}
		for _, f := range optionalModelFiles {
			if err := fetch(prefix + f); err != nil && !isNotFound(err) {
				return "", fmt.Errorf("hub: downloading %s: %s: %w", spec, f, err)
			}
		}
	}
	if rev == "" {
		rev = "main"
	}
	final := filepath.Join(snapRoot, rev)
	if err := mergeInto(stage, final); err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	if err := writeRef(repoDir, "main", rev); err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	return filepath.Join(final, filepath.FromSlash(ref.Subdir)), nil
}

// wantModelFile reports whether a listed file belongs in a model folder;
// hasST says whether the folder has safetensors weights (then PyTorch's
// pytorch_model*.bin files are not fetched).
func wantModelFile(base string, inSubdir, hasST bool) bool {
	if strings.Contains(base, "/") {
		return false
	}
	switch {
	case base == "config.json", strings.HasSuffix(base, ".safetensors"),
		base == "model.safetensors.index.json":
		return true
	case !hasST && (base == "pytorch_model.bin.index.json" ||
		strings.HasPrefix(base, "pytorch_model") && strings.HasSuffix(base, ".bin")):
		return true // PyTorch state dicts (package torchbin)
	case inSubdir && strings.HasSuffix(base, ".bin"):
		return true // llama2.c checkpoints and tokenizers
	}
	for _, f := range optionalModelFiles {
		if base == f {
			return true
		}
	}
	return false
}

// indexShards lists the distinct shard files of a safetensors or PyTorch
// index.
func indexShards(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	set := map[string]bool{}
	for _, f := range idx.WeightMap {
		if strings.Contains(f, "/") || strings.Contains(f, "..") || f == "" {
			return nil, fmt.Errorf("%s: bad shard name %q in weight_map", p, f)
		}
		set[f] = true
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("%s: weight_map is empty", p)
	}
	var out []string
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

// mergeInto moves the files of stage into final (created when missing),
// replacing files of the same name.
func mergeInto(stage, final string) error {
	return filepath.WalkDir(stage, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(stage, p)
		dst := filepath.Join(final, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		return os.Rename(p, dst)
	})
}

func downloadDataset(spec string, ref DatasetRef, repoDir string) (string, error) {
	ep := Endpoint()
	var urls []string
	apiURL := ep + "/api/datasets/" + escapePath(ref.Repo) + "/parquet/" + url.PathEscape(ref.Config) + "/" + url.PathEscape(ref.Split)
	apiErr := getJSON(apiURL, &urls)
	if apiErr != nil || len(urls) == 0 {
		urls = []string{ep + "/datasets/" + escapePath(ref.Repo) + "/resolve/" + url.PathEscape("refs/convert/parquet") + "/" +
			url.PathEscape(ref.Config) + "/" + url.PathEscape(ref.Split) + "/0000.parquet"}
	}
	snapRoot := filepath.Join(repoDir, "snapshots")
	if err := os.MkdirAll(snapRoot, 0o755); err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	stage, err := os.MkdirTemp(snapRoot, ".download-")
	if err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	defer os.RemoveAll(stage)
	rev := ""
	for i, u := range urls {
		name := fmt.Sprintf("%04d.parquet", i)
		c, err := download(u, filepath.Join(stage, ref.Config, ref.Split, name))
		if err != nil {
			if apiErr != nil {
				return "", fmt.Errorf("hub: downloading dataset %s: parquet listing failed (%v), and %w", spec, apiErr, err)
			}
			return "", fmt.Errorf("hub: downloading dataset %s: %w", spec, err)
		}
		if rev == "" && revRe.MatchString(c) {
			rev = c
		}
	}
	if rev == "" {
		rev = "convert-parquet"
	}
	final := filepath.Join(snapRoot, rev)
	dir := filepath.Join(final, ref.Config, ref.Split)
	// Replace stale shards of an earlier download of the same split.
	if isDir(dir) {
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("hub: %s: %w", spec, err)
		}
	}
	if err := mergeInto(stage, final); err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	if err := writeRef(repoDir, "convert/parquet", rev); err != nil {
		return "", fmt.Errorf("hub: %s: %w", spec, err)
	}
	return dir, nil
}
