package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/darwinlm/darwinlm-go/eval"
	"github.com/darwinlm/darwinlm-go/internal/progress"
)

func init() {
	var mf modelFlags
	var (
		tasks, suite, format, logSamples, out, taskDir string
		limit, numFewshot, batchSize, seqLen           int
		addBOS, noShare, list, subtasks                bool
	)
	c := &cobra.Command{
		Use:   "eval",
		Short: "Zero/few-shot evaluation with lm-evaluation-harness task formats, and perplexity suites",
		Long: `eval scores multiple-choice tasks exactly as lm-evaluation-harness 0.4.x does
(prompt templates, target delimiter " ", _encode_pair tokenization, no BOS by
default, acc and acc_norm = argmax of loglikelihood / characters of the choice,
stderr = sample sd / sqrt(n)) and the perplexity suites (non-overlapping windows
of --seq-len tokens, no BOS).

Tasks are YAML definitions embedded in the binary (eval/tasks/*.yaml); --task-dir
adds or overrides definitions from a folder. Suites:
  paper          sciq piqa winogrande arc_easy arc_challenge hellaswag logiqa boolq, 0-shot
  paper-mmlu     paper + mmlu (5-shot from the dev split)
  paper-scripts  DarwinLM's script shots (ARC-C 25, HellaSwag 10, WinoGrande 5): needs train splits
  ppl            wikitext2_ppl c4_ppl fineweb_edu_ppl tinystories_ppl
The Average row is the unweighted mean of the metric the paper reports per task
(marked *). Results go to stdout (--format table|json) and, as JSON in
lm-eval's layout, to --out.`,
		Example: `  bin/darwinlm eval --model hf:raincandy-u/TinyStories-656K --tasks piqa,hellaswag --limit 100
  bin/darwinlm eval --model M --suite paper --format json --out results/eval.json
  bin/darwinlm eval --model M --tasks mmlu --num-fewshot 5 --log-samples results/mmlu.jsonl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(cmd, "unexpected arguments %q (name tasks with --tasks)", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, o := range []struct{ flag, path string }{{"--out", out}, {"--log-samples", logSamples}} {
				if err := checkWritable(o.flag, o.path); err != nil {
					return err
				}
			}
			if err := checkDistinct("--out", out, "--log-samples", logSamples); err != nil {
				return err
			}
			reg, err := eval.LoadRegistry(taskDir)
			if err != nil {
				return err
			}
			suites, err := eval.Suites()
			if err != nil {
				return err
			}
			if list {
				fmt.Println("tasks: " + strings.Join(reg.Names(), ", "))
				var sn []string
				for n := range suites {
					sn = append(sn, n)
				}
				sort.Strings(sn)
				fmt.Println("suites: " + strings.Join(sn, ", "))
				return nil
			}
			if cmd.Flags().Changed("limit") && limit <= 0 {
				return usagef(cmd, "--limit must be a positive number of documents, got %d", limit)
			}
			if limit < 0 {
				limit = 0
			}
			if format != "table" && format != "json" {
				return usagef(cmd, "--format must be table or json, got %q", format)
			}
			if numFewshot < 0 {
				return usagef(cmd, "--num-fewshot must be ≥ 0, got %d", numFewshot)
			}
			if batchSize < 1 {
				return usagef(cmd, "--batch-size must be at least 1, got %d", batchSize)
			}
			if cmd.Flags().Changed("seq-len") && seqLen < 2 {
				return usagef(cmd, "--seq-len must be at least 2, got %d", seqLen)
			}
			var specs []eval.TaskSpec
			switch {
			case suite != "" && tasks != "":
				return usagef(cmd, "give --tasks or --suite, not both")
			case suite != "":
				s, ok := suites[suite]
				if !ok {
					var sn []string
					for n := range suites {
						sn = append(sn, n)
					}
					sort.Strings(sn)
					return fmt.Errorf("unknown suite %q (known: %s)", suite, strings.Join(sn, ", "))
				}
				specs = s.Tasks
			case tasks != "":
				for _, t := range strings.Split(tasks, ",") {
					if t = strings.TrimSpace(t); t != "" {
						if _, _, err := reg.Get(t); err != nil {
							return err
						}
						specs = append(specs, eval.TaskSpec{Task: t})
					}
				}
			default:
				return usagef(cmd, "--tasks or --suite is required (known tasks: %s)", strings.Join(reg.Names(), ", "))
			}
			for _, s := range specs { // fail on unknown names before loading the model
				if _, _, err := reg.Get(s.Task); err != nil {
					return err
				}
			}
			m, tok, be, err := mf.load()
			if err != nil {
				return err
			}
			if seqLen > 0 && m.Cfg.MaxSeq > 0 && seqLen > m.Cfg.MaxSeq {
				return usagef(cmd, "--seq-len %d exceeds the model's context of %d tokens", seqLen, m.Cfg.MaxSeq)
			}
			lm := eval.NewModelLM(m, be, tok)
			lm.AddBOS, lm.NoShare, lm.BatchGroups = addBOS, noShare, batchSize
			var bar *progress.Bar
			current := ""
			lm.Progress = func(done, total int) {
				if bar == nil {
					bar = progress.New(int64(total), current)
				}
				bar.Set(done)
				if done >= total {
					bar.Finish()
					bar = nil
				}
			}
			opt := eval.Options{Limit: limit, SeqLen: seqLen, Progress: func(t string) {
				current = t
				if !mf.quiet {
					fmt.Fprintf(os.Stderr, "eval: %s\n", t)
				}
			}}
			if cmd.Flags().Changed("num-fewshot") {
				if numFewshot < 0 {
					return usagef(cmd, "--num-fewshot must be ≥ 0, got %d", numFewshot)
				}
				opt.NumFewshot = &numFewshot
			}
			var samples bytes.Buffer
			if logSamples != "" {
				opt.LogSamples = &samples
			}
			start := time.Now()
			rep, err := eval.Evaluate(lm, reg, specs, opt)
			if err != nil {
				return mf.computeErr(be, err)
			}
			lim := any(nil)
			if limit > 0 {
				lim = limit
			}
			config := map[string]any{
				"model": mf.model, "tokenizer": mf.tokenizer, "add_bos": addBOS, "limit": lim,
				"date": start.UTC().Format(time.RFC3339), "duration_s": time.Since(start).Seconds(),
				"backend": be.Name(), "max_length": m.Cfg.MaxSeq, "suite": suite, "prefix_sharing": !noShare,
				"batch_size": batchSize, "seq_len": seqLen, "fewshot_seed": 1234, "fewshot_generator": "CPython random.Random MT19937 (first_n for mmlu)",
				"harness":            "darwinlm-go eval (lm-evaluation-harness 0.4.x task formats)",
				"truncated_requests": lm.Truncations, "empty_continuations": lm.EmptyContinuations, "forward_tokens": lm.ForwardTokens, "gomaxprocs": runtime.GOMAXPROCS(0),
			}
			js := rep.JSON(config)
			b, err := json.MarshalIndent(js, "", "  ")
			if err != nil {
				return err
			}
			if lm.Truncations > 0 {
				fmt.Fprintf(os.Stderr, "eval: %d requests were longer than the model's %d tokens and were left-truncated\n", lm.Truncations, m.Cfg.MaxSeq)
			}
			// Results go to stdout first, so a failure to write the files
			// below (a full disk, a folder removed meanwhile) loses nothing.
			if format == "json" {
				_, err = os.Stdout.Write(append(b, '\n'))
			} else {
				err = rep.WriteTable(os.Stdout, subtasks)
			}
			if err != nil {
				return err
			}
			if out != "" {
				if err := writeOutput(out, append(b, '\n')); err != nil {
					return fmt.Errorf("--out: %w (the results are on stdout)", err)
				}
			}
			if logSamples != "" {
				if err := writeOutput(logSamples, samples.Bytes()); err != nil {
					return fmt.Errorf("--log-samples: %w (the results are on stdout)", err)
				}
			}
			return nil
		},
	}
	mf.register(c)
	f := c.Flags()
	f.StringVar(&tasks, "tasks", "", "comma-separated tasks (see --list); mmlu_<subject> selects one MMLU subject")
	f.StringVar(&suite, "suite", "", "task suite: paper, paper-mmlu, paper-scripts, ppl")
	f.IntVar(&limit, "limit", -1, "evaluate only the first N documents of each task (per subject for mmlu)")
	f.IntVar(&numFewshot, "num-fewshot", 0, "few-shot examples for every task (default: the task's or suite's count)")
	f.StringVar(&format, "format", "table", "stdout format: table or json")
	f.StringVar(&logSamples, "log-samples", "", "write one JSON line per document (contexts, continuations, loglikelihoods, gold, pred, pred_norm)")
	f.BoolVar(&addBOS, "add-bos", false, "prepend BOS to contexts (lm-eval >= 0.4.9.2 behaviour; DarwinLM's harness added none)")
	f.IntVar(&batchSize, "batch-size", 16, "questions per forward pass")
	f.IntVar(&seqLen, "seq-len", 0, "perplexity window in tokens (default min(model max, 2048))")
	f.StringVar(&out, "out", "", "also write the JSON results to this file (its folder must exist; checked before evaluating)")
	f.StringVar(&taskDir, "task-dir", "", "folder of extra task YAML files (override embedded ones of the same name)")
	f.BoolVar(&noShare, "no-prefix-sharing", false, "score every choice with its own forward pass")
	f.BoolVar(&subtasks, "subtasks", false, "list MMLU subjects in the table")
	f.BoolVar(&list, "list", false, "list the known tasks and suites")
	addCommand(c)
}
