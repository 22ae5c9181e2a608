// Package eval reproduces lm-evaluation-harness 0.4.x (the harness DarwinLM
// used) for the paper's tasks, plus the perplexity suites.
//
// Tasks are data: one YAML file per task in tasks/ (embedded; a folder given
// to LoadRegistry adds or overrides definitions) with lm-eval's fields
// (doc_to_text, doc_to_choice, doc_to_target, target_delimiter,
// fewshot_delimiter, description, fewshot_split, num_fewshot, metric_list)
// written in a small Jinja subset (see Template), plus named preprocessors
// for lm-eval's Python functions (hellaswag, winogrande, logiqa). Suites
// (paper, paper-mmlu, paper-scripts, ppl) are in suites.yaml.
//
// Scoring (ModelLM) follows HFLM: _encode_pair tokenization (trailing
// whitespace of the context moves to the continuation; the continuation's
// tokens are those of encode(ctx+cont) after len(encode(ctx))), no BOS unless
// AddBOS, left truncation to the model length (counted), log-likelihood summed
// in float64. The choices of one question share the forward pass of their
// common token prefix: the prefix rows run once and each choice's suffix
// attends to the prefix's keys and values, so every row gets exactly the
// computation of a full forward (checked bit-for-bit against model.Forward in
// the tests). acc = argmax ll, acc_norm = argmax ll/len(choice in code
// points), stderr = sample sd/√n; MMLU is grouped by subject, its group score
// is the micro-average with lm-eval's pooled stderr.
//
// Few-shot: first_n (MMLU, dev split) or lm-eval's default sampler,
// reproduced with CPython's MT19937 random.Random(1234).sample, including
// the v0.4.x k+1 draw for tasks without fewshot_split/test_split. A few-shot
// split missing from the data is an error, never a silent 0-shot run (the
// offline mirror has no train splits: only MMLU can run few-shot there).
//
// Known deviations, inherited from the offline mirror (see
// ../shared/reference/lm-eval-tasks.md §4): HellaSwag was reconstructed (7
// WikiHow rows get a spurious ctx_b and are capitalised differently from
// lm-eval); SciQ distractors are in shuffled order; c4_ppl uses a 2000-doc
// sample, not the GPTQ protocol's documents.
package eval
