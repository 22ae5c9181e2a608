package train

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/darwinlm/darwinlm-go/backend"
	_ "github.com/darwinlm/darwinlm-go/backend/cpu"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/model/modeltest"
)

type randCfg = modeltest.Cfg

func randomModel(rc randCfg, pruned bool, seed uint64) *model.Model {
	return modeltest.Random(rc, pruned, seed)
}

func cpu(t testing.TB) backend.Backend {
	be, err := backend.Get("")
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// mirror returns the hub mirror folder from DARWINLM_HUB_MIRROR (a relative
// value is resolved against the module root), or skips.
func mirror(t testing.TB) string {
	v := os.Getenv("DARWINLM_HUB_MIRROR")
	if v == "" {
		t.Skip("DARWINLM_HUB_MIRROR not set")
	}
	if !filepath.IsAbs(v) {
		dir, _ := os.Getwd()
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			p := filepath.Dir(dir)
			if p == dir {
				break
			}
			dir = p
		}
		v = filepath.Join(dir, v)
	}
	return v
}
