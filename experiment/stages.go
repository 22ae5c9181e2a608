package experiment

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/darwinlm/darwinlm-go/backend"
	"github.com/darwinlm/darwinlm-go/data"
	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/internal/atomicfile"
	"github.com/darwinlm/darwinlm-go/internal/progress"
	"github.com/darwinlm/darwinlm-go/model"
	"github.com/darwinlm/darwinlm-go/nn"
	"github.com/darwinlm/darwinlm-go/train"
)

func init() {
	stageFuncs["dense"] = func(*Env) error { return nil } // the profile's model itself
	stageFuncs["eval"] = runEval
	stageFuncs["posttrain"] = runPostTrain
}

// checkData reads every text source of a profile once, before any compute,
// so a wrong path fails at the start with the field's name.
func checkData(s *Spec, name string, p *Profile) error {
	for _, f := range []struct{ field, spec string }{
		{"data.calib", p.Data.Calib}, {"data.train", p.Data.Train}, {"data.heldout", p.Data.Heldout}} {
		if f.spec == "" {
			continue
		}
		docs, err := data.ReadTexts(f.spec)
		if err != nil {
			return fmt.Errorf("%s: profiles.%s.%s: %w", s.path, name, f.field, err)
		}
		if len(docs) == 0 {
			return fmt.Errorf("%s: profiles.%s.%s: %s has no documents", s.path, name, f.field, f.spec)
		}
	}
	if p.Eval.Suite != "" {
		suites, err := eval.Suites()
		if err != nil {
			return err
		}
		su, ok := suites[p.Eval.Suite]
		if !ok {
			return fmt.Errorf("%s: profiles.%s.eval.suite: unknown suite %q", s.path, name, p.Eval.Suite)
		}
		names := append([]string(nil), p.Eval.Tasks...)
		for t, l := range p.Eval.TaskLimits {
			if l < 0 {
				return fmt.Errorf("%s: profiles.%s.eval.task_limits.%s: must be >= 0", s.path, name, t)
			}
			names = append(names, t)
		}
		for _, t := range names {
			found := false
			for _, x := range su.Tasks {
				found = found || x.Task == t
			}
			if !found {
				return fmt.Errorf("%s: profiles.%s.eval: task %q is not in suite %s", s.path, name, t, p.Eval.Suite)
			}
		}
	}
	return nil
}

// Metric is one evaluated number of a row.
type Metric struct {
	Task   string  `json:"task"`   // task name, or "heldout" for ppl and kl
	Metric string  `json:"metric"` // acc, acc_norm, ppl, kl
	Value  float64 `json:"value"`  // fraction for accuracies
	Stderr float64 `json:"stderr"`
	N      int64   `json:"n"`
	Main   bool    `json:"main"` // the metric the paper reports for the task
}

// EvalResult is eval stage's metrics.json.
type EvalResult struct {
	Params  int64    `json:"params"`
	Metrics []Metric `json:"metrics"`
}

// HeldoutIDs tokenizes the held-out text as ppl does (documents joined with
// "\n\n", no special tokens) and keeps at most windows·seqLen tokens.
func HeldoutIDs(e *Env) ([]int, error) {
	docs, err := data.ReadTexts(e.Profile.Data.Heldout)
	if err != nil {
		return nil, err
	}
	ids := e.Tok.Encode(strings.Join(docs, "\n\n"))
	if w := e.Profile.Eval.HeldoutWindows; w > 0 && len(ids) > w*e.Profile.SeqLen {
		ids = ids[:w*e.Profile.SeqLen]
	}
	return ids, nil
}

func runEval(e *Env) error {
	src := e.Input("")
	m, err := e.LoadInputModel(src)
	if err != nil {
		return err
	}
	p := e.Profile
	res := EvalResult{Params: m.NumParams()}
	if p.Eval.Suite != "" {
		suites, err := eval.Suites()
		if err != nil {
			return err
		}
		specs := suites[p.Eval.Suite].Tasks
		if len(p.Eval.Tasks) > 0 {
			var keep []eval.TaskSpec
			for _, t := range specs {
				if contains(p.Eval.Tasks, t.Task) {
					keep = append(keep, t)
				}
			}
			specs = keep
		}
		reg, err := eval.LoadRegistry("")
		if err != nil {
			return err
		}
		lm := eval.NewModelLM(m, e.Be, e.Tok)
		var results []*eval.TaskResult
		for _, sp := range specs { // one call per task: limits differ per task
			limit := p.Eval.Limit
			if l, ok := p.Eval.TaskLimits[sp.Task]; ok {
				limit = l
			}
			rep, err := eval.Evaluate(lm, reg, []eval.TaskSpec{sp}, eval.Options{Limit: limit,
				Progress: func(t string) { e.Log("task %s (limit %d)", t, limit) }})
			if err != nil {
				return err
			}
			results = append(results, rep.Results...)
		}
		for _, r := range results {
			if r.Subtask {
				continue
			}
			for _, k := range r.Order {
				if strings.HasSuffix(k, "_stderr") {
					continue
				}
				res.Metrics = append(res.Metrics, Metric{Task: r.Task, Metric: k, Value: r.Metrics[k],
					Stderr: r.Metrics[k+"_stderr"], N: int64(r.N), Main: k == r.Metric})
			}
		}
	}
	ids, err := HeldoutIDs(e)
	if err != nil {
		return err
	}
	pr, err := eval.PerplexityIDs(m, e.Be, m.Cfg.Vocab, ids, p.SeqLen, nil)
	if err != nil {
		return fmt.Errorf("held-out perplexity: %w", err)
	}
	res.Metrics = append(res.Metrics, Metric{Task: "heldout", Metric: "ppl", Value: pr.PPL, N: int64(pr.Scored), Main: true})
	kl, n, err := KLToDense(e.Be, e.Dense, m, ids, p.SeqLen)
	if err != nil {
		return err
	}
	res.Metrics = append(res.Metrics, Metric{Task: "heldout", Metric: "kl", Value: kl, N: int64(n), Main: true})
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(e.Dir, "metrics.json"), append(b, '\n'))
}

// KLToDense is the token mean of KL(dense ‖ m) over the full vocabulary on
// consecutive windows of seqLen tokens of ids, every position but the last
// of each window (as the reference's compute_kl_div): the search's fitness,
// here as an evaluation column.
func KLToDense(be backend.Backend, dense, m *model.Model, ids []int, seqLen int) (float64, int, error) {
	if dense.Cfg.Vocab != m.Cfg.Vocab {
		return 0, 0, fmt.Errorf("kl: vocabularies differ (%d, %d)", dense.Cfg.Vocab, m.Cfg.Vocab)
	}
	V := m.Cfg.Vocab
	nw := len(ids) / seqLen
	if nw == 0 {
		return 0, 0, fmt.Errorf("kl: %d held-out tokens, fewer than one window of %d", len(ids), seqLen)
	}
	var sum float64
	const batch = 8
	for w0 := 0; w0 < nw; w0 += batch {
		var seqs [][]int
		for w := w0; w < min(nw, w0+batch); w++ {
			seqs = append(seqs, ids[w*seqLen:(w+1)*seqLen])
		}
		pl := dense.Forward(be, seqs)
		ql := m.Forward(be, seqs)
		rows := len(seqs) * seqLen
		part := make([]float64, rows)
		nn.ParallelFor(rows, func(r int) {
			if r%seqLen != seqLen-1 {
				part[r] = KLRow(pl[r*V:(r+1)*V], ql[r*V:(r+1)*V])
			}
		})
		for _, v := range part {
			sum += v
		}
	}
	n := nw * (seqLen - 1)
	return sum / float64(n), n, nil
}

// KLRow is KL(softmax(p) ‖ softmax(q)) of two logit rows, in float64.
func KLRow(p, q []float32) float64 {
	lp, lq := nn.LogSumExp(p), nn.LogSumExp(q)
	var kl float64
	for i := range p {
		a := float64(p[i]) - lp
		kl += math.Exp(a) * (a - (float64(q[i]) - lq))
	}
	return max(kl, 0)
}

// TrainRow is one post-training log line.
type TrainRow struct {
	Step   int64   `json:"step"`
	Tokens int64   `json:"tokens"`
	Loss   float64 `json:"loss"`
	LR     float64 `json:"lr"`
}

// runPostTrain trains the input model on the profile's train corpus with the
// same budget for every row.
// SEAM(trainlib): switch to train.Run once branch trainlib lands (resume
// inside the stage); today an interrupted post-training restarts the stage.
func runPostTrain(e *Env) error {
	p := e.Profile
	pt := p.PostTrain
	m, err := e.LoadInputModel(e.Input(""))
	if err != nil {
		return err
	}
	if pt.Tokens == 0 {
		return e.SaveModel(m)
	}
	docs, err := data.ReadTexts(p.Data.Train)
	if err != nil {
		return err
	}
	toks := train.Tokenize(e.Tok, docs)
	batch := max(pt.Batch, 1)
	ld, err := train.NewLoader(toks, p.SeqLen, batch, uint64(p.Seed))
	if err != nil {
		return err
	}
	steps := max(1, pt.Tokens/(batch*p.SeqLen))
	o := train.DefaultOptions()
	o.LR, o.MinLR, o.Schedule, o.Warmup, o.Clip, o.Steps, o.WeightDecay = pt.LR, pt.MinLR, pt.Schedule, pt.Warmup, pt.Clip, steps, pt.WD
	if pt.Beta2 > 0 {
		o.Beta2 = pt.Beta2
	}
	tr, err := train.NewTrainer(e.Be, m, nil, o)
	if err != nil {
		return err
	}
	defer tr.Close()
	bar := progress.New(int64(steps), e.Stage.ID+" steps")
	var log []TrainRow
	var tokens int64
	for i := 0; i < steps; i++ {
		if err := e.Ctx.Err(); err != nil {
			return err
		}
		st, err := tr.TrainStep(ld.Next())
		if err != nil {
			return err
		}
		tokens += int64(st.Tokens)
		log = append(log, TrainRow{Step: int64(st.Step), Tokens: tokens, Loss: st.Loss, LR: st.LR})
		bar.Add(1)
	}
	bar.Finish()
	e.Log("%d steps, %d tokens, final loss %.4f", steps, tokens, log[len(log)-1].Loss)
	b, err := json.Marshal(log)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(e.Dir, "train_log.json"), b); err != nil {
		return err
	}
	return e.SaveModel(m)
}
