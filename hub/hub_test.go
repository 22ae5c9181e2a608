package hub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParse(t *testing.T) {
	r, err := ParseModel("hf:karpathy/tinyllamas/stories260K")
	if err != nil || r.Repo != "karpathy/tinyllamas" || r.Subdir != "stories260K" {
		t.Errorf("ParseModel = %+v, %v", r, err)
	}
	d, err := ParseDataset("hf-dataset:super_glue/boolq/validation")
	if err != nil || d.Repo != "super_glue" || d.Config != "boolq" || d.Split != "validation" {
		t.Errorf("ParseDataset = %+v, %v", d, err)
	}
	d, err = ParseDataset("hf-dataset:ybisk/piqa/plain_text/validation")
	if err != nil || d.Repo != "ybisk/piqa" || d.Config != "plain_text" {
		t.Errorf("ParseDataset = %+v, %v", d, err)
	}
	for _, bad := range []string{"hf:x", "hf:../etc/passwd", "hf:a/..", "hf:a/b/../../c"} {
		if _, err := ParseModel(bad); err == nil {
			t.Errorf("ParseModel(%q): no error", bad)
		}
	}
	for _, bad := range []string{"hf-dataset:a/b", "hf-dataset:a/b/c/d/e", "hf-dataset:a/../c/d"} {
		if _, err := ParseDataset(bad); err == nil {
			t.Errorf("ParseDataset(%q): no error", bad)
		}
	}
}

func TestMirror(t *testing.T) {
	if os.Getenv("DARWINLM_HUB_MIRROR") == "" {
		t.Skip("DARWINLM_HUB_MIRROR is not set")
	}
	t.Setenv("HF_HOME", t.TempDir())
	t.Setenv("DARWINLM_OFFLINE", "1")
	p, err := ResolveModel("hf:raincandy-u/TinyStories-656K")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "model.safetensors")); err != nil {
		t.Error(err)
	}
	p, err = ResolveModel("hf:karpathy/tinyllamas/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "stories260K.bin")); err != nil {
		t.Error(err)
	}
	p, err = ResolveModel("hf:karpathy/tinyllamas/stories260K/stories260K.bin")
	if err != nil || filepath.Base(p) != "stories260K.bin" {
		t.Error(p, err)
	}
	p, err = ResolveDataset("hf-dataset:super_glue/boolq/validation")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() == 0 {
		t.Error(p, err)
	}
	_, err = ResolveModel("hf:nobody/nothing")
	if err == nil || !strings.Contains(err.Error(), "DARWINLM_OFFLINE") || !strings.Contains(err.Error(), "nobody/nothing") {
		t.Errorf("offline error = %v", err)
	}
	_, err = ResolveDataset("hf-dataset:nobody/nothing/cfg/split")
	if err == nil || !strings.Contains(err.Error(), "DARWINLM_OFFLINE") {
		t.Errorf("offline error = %v", err)
	}
}

const commit = "0123456789abcdef0123456789abcdef01234567"

type fakeHub struct {
	files   map[string]string // "repo/file" -> content
	listing bool              // serve /api/models/.../revision/main
	hits    atomic.Int32
}

func (f *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, "/api/models/") && strings.HasSuffix(p, "/revision/main"):
		if !f.listing {
			http.NotFound(w, r)
			return
		}
		repo := strings.TrimSuffix(strings.TrimPrefix(p, "/api/models/"), "/revision/main")
		var sib []map[string]string
		for k := range f.files {
			if strings.HasPrefix(k, repo+"/") {
				sib = append(sib, map[string]string{"rfilename": strings.TrimPrefix(k, repo+"/")})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"sha": commit, "siblings": sib})
	case strings.HasPrefix(p, "/api/datasets/"):
		// /api/datasets/{repo}/parquet/{config}/{split}
		rest := strings.TrimPrefix(p, "/api/datasets/")
		i := strings.Index(rest, "/parquet/")
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		repo, cs := rest[:i], rest[i+len("/parquet/"):]
		var urls []string
		for n := 0; ; n++ {
			k := fmt.Sprintf("datasets/%s/parquet/%s/%d.parquet", repo, cs, n)
			if _, ok := f.files[k]; !ok {
				break
			}
			urls = append(urls, "http://"+r.Host+"/"+k)
		}
		if len(urls) == 0 {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(urls)
	default:
		key := strings.TrimPrefix(p, "/")
		key = strings.Replace(key, "/resolve/main/", "/", 1)
		key = strings.Replace(key, "/resolve/refs%2Fconvert%2Fparquet/", "/convert/", 1)
		body, ok := f.files[key]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Repo-Commit", commit)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write([]byte(body))
	}
}

func setup(t *testing.T, f *fakeHub) string {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("DARWINLM_OFFLINE", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("DARWINLM_HUB_MIRROR", "")
	return home
}

func TestDownloadModelSharded(t *testing.T) {
	f := &fakeHub{files: map[string]string{
		"org/m/config.json":                      `{"architectures":["LlamaForCausalLM"]}`,
		"org/m/model.safetensors.index.json":     `{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}`,
		"org/m/model-00001-of-00002.safetensors": "shard1",
		"org/m/model-00002-of-00002.safetensors": "shard2",
		"org/m/tokenizer.json":                   "{}",
	}}
	home := setup(t, f)
	dir, err := ResolveModel("hf:org/m")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(home, "hub", "models--org--m", "snapshots", commit)
	if dir != want {
		t.Errorf("dir = %s, want %s", dir, want)
	}
	for name, body := range map[string]string{"config.json": f.files["org/m/config.json"], "model-00002-of-00002.safetensors": "shard2", "tokenizer.json": "{}"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != body {
			t.Errorf("%s = %q, %v", name, b, err)
		}
	}
	ref, _ := os.ReadFile(filepath.Join(home, "hub", "models--org--m", "refs", "main"))
	if string(ref) != commit {
		t.Errorf("refs/main = %q", ref)
	}
	// No stray temporary files.
	ents, _ := os.ReadDir(filepath.Join(home, "hub", "models--org--m", "snapshots"))
	if len(ents) != 1 {
		t.Errorf("snapshots holds %d entries", len(ents))
	}
	// The second resolution is served from the cache, even offline.
	n := f.hits.Load()
	t.Setenv("DARWINLM_OFFLINE", "1")
	dir2, err := ResolveModel("hf:org/m")
	if err != nil || dir2 != dir || f.hits.Load() != n {
		t.Errorf("cached: %s %v (hits %d -> %d)", dir2, err, n, f.hits.Load())
	}
}

func TestDownloadModelListing(t *testing.T) {
	f := &fakeHub{listing: true, files: map[string]string{
		"karpathy/tinyllamas/stories260K/stories260K.bin": "ckpt",
		"karpathy/tinyllamas/stories260K/tok512.bin":      "tok",
		"karpathy/tinyllamas/stories260K/stories260K.pt":  "pt",
		"karpathy/tinyllamas/stories15M.bin":              "other",
	}}
	setup(t, f)
	dir, err := ResolveModel("hf:karpathy/tinyllamas/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != "stories260K" {
		t.Errorf("dir = %s", dir)
	}
	for _, n := range []string{"stories260K.bin", "tok512.bin"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K.pt")); err == nil {
		t.Error("downloaded the .pt file")
	}
	// A spec naming a file resolves to that file, with its folder beside it.
	setup(t, f)
	p, err := ResolveModel("hf:karpathy/tinyllamas/stories260K/stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "stories260K.bin" {
		t.Errorf("path = %s", p)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), "tok512.bin")); err != nil {
		t.Error(err)
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
	if p2, err := ResolveModel("hf:karpathy/tinyllamas/stories260K/stories260K.bin"); err != nil || p2 != p {
		t.Errorf("cached file spec = %s, %v", p2, err)
	}
}

func TestDownloadModelMissing(t *testing.T) {
	f := &fakeHub{files: map[string]string{"org/nomodel/config.json": "{}"}}
	setup(t, f)
	_, err := ResolveModel("hf:org/nomodel")
	if err == nil || !strings.Contains(err.Error(), "org/nomodel") || !strings.Contains(err.Error(), "404") {
		t.Errorf("error = %v", err)
	}
	_, err = ResolveModel("hf:org/absent")
	if err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("error = %v", err)
	}
}

func TestDownloadDataset(t *testing.T) {
	f := &fakeHub{files: map[string]string{
		"datasets/org/ds/parquet/cfg/test/0.parquet":           "p0",
		"datasets/org/ds/parquet/cfg/test/1.parquet":           "p1",
		"datasets/org/ds2/convert/cfg/validation/0000.parquet": "only",
	}}
	home := setup(t, f)
	p, err := ResolveDataset("hf-dataset:org/ds/cfg/test")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(home, "hub", "datasets--org--ds", "snapshots", commit, "cfg", "test")
	if p != want {
		t.Errorf("path = %s, want %s", p, want)
	}
	for i, body := range []string{"p0", "p1"} {
		b, err := os.ReadFile(filepath.Join(p, fmt.Sprintf("%04d.parquet", i)))
		if err != nil || string(b) != body {
			t.Errorf("shard %d = %q %v", i, b, err)
		}
	}
	t.Setenv("DARWINLM_OFFLINE", "1")
	if p2, err := ResolveDataset("hf-dataset:org/ds/cfg/test"); err != nil || p2 != p {
		t.Errorf("cached = %s, %v", p2, err)
	}
	t.Setenv("DARWINLM_OFFLINE", "")
	// Fallback to the refs/convert/parquet resolve URL.
	p, err = ResolveDataset("hf-dataset:org/ds2/cfg/validation")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(p, "0000.parquet"))
	if err != nil || string(b) != "only" {
		t.Errorf("fallback = %q %v", b, err)
	}
	_, err = ResolveDataset("hf-dataset:org/none/cfg/test")
	if err == nil || !strings.Contains(err.Error(), "org/none") {
		t.Errorf("missing dataset error = %v", err)
	}
}

func TestMirrorRelative(t *testing.T) {
	root := ModuleRoot()
	if root == "" {
		t.Skip("no go.mod above the working directory")
	}
	t.Setenv("DARWINLM_HUB_MIRROR", "some/relative/dir")
	if got := Mirror(); got != filepath.Join(root, "some/relative/dir") {
		t.Errorf("Mirror() = %s", got)
	}
}

// A repository with only PyTorch weights (as princeton-nlp/Sheared-LLaMA-2.7B)
// downloads them, with or without a file listing; one with both formats
// downloads only the safetensors files.
func TestDownloadModelPyTorch(t *testing.T) {
	files := map[string]string{
		"princeton-nlp/Sheared-LLaMA-2.7B/config.json":                      `{"architectures":["LlamaForCausalLM"]}`,
		"princeton-nlp/Sheared-LLaMA-2.7B/pytorch_model.bin.index.json":     `{"metadata":{},"weight_map":{"a":"pytorch_model-00001-of-00002.bin","b":"pytorch_model-00002-of-00002.bin"}}`,
		"princeton-nlp/Sheared-LLaMA-2.7B/pytorch_model-00001-of-00002.bin": "shard1",
		"princeton-nlp/Sheared-LLaMA-2.7B/pytorch_model-00002-of-00002.bin": "shard2",
		"princeton-nlp/Sheared-LLaMA-2.7B/tokenizer.model":                  "tok",
		"org/single/config.json":                                            "{}",
		"org/single/pytorch_model.bin":                                      "bin",
		"org/both/config.json":                                              "{}",
		"org/both/model.safetensors":                                        "st",
		"org/both/pytorch_model.bin":                                        "bin",
	}
	for _, listing := range []bool{true, false} {
		f := &fakeHub{listing: listing, files: files}
		setup(t, f)
		dir, err := ResolveModel("hf:princeton-nlp/Sheared-LLaMA-2.7B")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"config.json", "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "tokenizer.model"} {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				t.Errorf("listing %v: %v", listing, err)
			}
		}
		dir, err = ResolveModel("hf:org/single")
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "pytorch_model.bin")); err != nil || string(b) != "bin" {
			t.Errorf("listing %v: pytorch_model.bin = %q, %v", listing, b, err)
		}
		dir, err = ResolveModel("hf:org/both")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
			t.Errorf("listing %v: %v", listing, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "pytorch_model.bin")); err == nil {
			t.Errorf("listing %v: downloaded pytorch_model.bin beside model.safetensors", listing)
		}
	}
}
