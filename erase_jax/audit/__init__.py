"""A per-example unlearning membership-inference audit with shadow models trained as one vmap.

U-LiRA (Hayes et al., "Inexact Unlearning Needs More Careful Evaluations to Avoid a False
Sense of Privacy", arXiv 2403.01218) and RULI's game 2 (Naderloui et al., USENIX Security
2025, arXiv 2506.13009), translated to recommenders (docs: `shared/specs/privacy-and-spam.md`,
section A5). One concern per module: `pairs` (which (user, item) training rows are audited),
`assignment` (each audited pair IN / UNLEARN / OUT in each shadow), `shadows` (K BPR or
LightGCN shadows trained as one vmap with the sharded-ensemble machinery, one graph per shadow
where the context depends on the data, and each audited removal applied to all of them),
`sequence_shadows` / `sequence_methods` (the same for SASRec / GRU4Rec: per-shadow sequences
rebuilt without the removed interactions, stacked and trained as one vmap),
`devices` (the shadow axis split over a device mesh), `pilot` (the most memorised pairs from a
few pilot shadows), `confidence` (the logit-scaled confidence of a pair), `lira` (per-pair Gaussian
likelihood ratios, each shadow in turn the target), `rmia` (RMIA's offline score with a few
reference shadows, the cheaper option), `roc` (exact ROC AUC and TPR at a fixed FPR), `game`
(the two games, and game 2 with RMIA, on a set of shadows). What a score means and what it
cannot show: docs/privacy_audit.md.
"""
