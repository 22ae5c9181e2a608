// Package evolve is DarwinLM's evolutionary search with training-aware
// selection (the reference's evo_struct_prune_search.py; paper-notes b.4):
// a (1+λ) search over one pruning level per prunable module.
//
// The core — Search over a Problem (a Space, the lengths of the two pools,
// an Evaluator) with Options — holds the search state, the level-switch
// mutation (mutate.go), the minibatch draws and ranking (batch.go), the
// random streams (rng.go) and the Parquet log that --resume continues from
// (log.go). It knows nothing of models: ModelEvaluator implements Evaluator
// with a pruning database (Stitcher), train.FineTuner and fitness against
// the dense logits cached once (DenseCache); Run (Config) wires everything
// from files for `darwinlm search`.
//
// One generation: λ distinct offspring of the parent by level-switch
// mutation; then, per stage, a fresh training minibatch (whole sequences,
// at least the stage's budget) and fitness minibatch (exactly the stage's
// tokens) shared by all candidates, each candidate stitched, fine-tuned
// from its database weights and scored, the best kept in fitness order;
// the parent joins the stage whose survivor count equals the last stage's
// (elitism), and the last survivor becomes the parent.
package evolve
