package eval

import (
	"testing"
	"time"
)

// BenchmarkScoring reports docs/s of TinyStories-656K on the first 100
// documents of PIQA and HellaSwag, with prefix sharing and without, and the
// speed-up of sharing:
//
//	DARWINLM_HUB_MIRROR=../shared/hf go test -run '^$' -bench Scoring -benchtime 3x ./eval
func BenchmarkScoring(b *testing.B) {
	m, tok, be := loadTiny(b)
	reg, err := LoadRegistry("")
	if err != nil {
		b.Fatal(err)
	}
	for _, task := range []string{"piqa", "hellaswag"} {
		tk, _, _ := reg.Get(task)
		ins, err := tk.Build(BuildOptions{Limit: 100})
		if err != nil {
			b.Fatal(err)
		}
		var reqs []Request
		for i, in := range ins {
			for c := range in.Contexts {
				reqs = append(reqs, Request{in.Contexts[c], in.Conts[c], i})
			}
		}
		b.Run(task, func(b *testing.B) {
			var shared, naive time.Duration
			for i := 0; i < b.N; i++ {
				for _, noShare := range []bool{false, true} {
					lm := NewModelLM(m, be, tok)
					lm.NoShare = noShare
					t0 := time.Now()
					if _, err := lm.Loglikelihoods(reqs); err != nil {
						b.Fatal(err)
					}
					if noShare {
						naive += time.Since(t0)
					} else {
						shared += time.Since(t0)
					}
				}
			}
			n := float64(len(ins) * b.N)
			b.ReportMetric(n/shared.Seconds(), "docs/s")
			b.ReportMetric(n/naive.Seconds(), "naive-docs/s")
			b.ReportMetric(naive.Seconds()/shared.Seconds(), "speedup")
		})
	}
}
