"""Evaluation: ranking metrics, full ranking per task family, and the evaluators that the
unlearning protocol runs at each checkpoint, found by name (`base.EVALUATORS`).

Helpers: `metrics` (ranking metrics from top-k lists), `cf_ranking` and `sequence_ranking`
(full ranking on device; `sharded_ranking` splits a factor model's item table over devices),
`scoring` (score functions, blocked ranks, the key scheme).
Evaluators (`base.Evaluator`), one file each: `utility` (test metrics), `exposure` (sensitive
items, spam targets), `agreement` (top-k agreement with the retrain), `forgetting` (ranks of
the forgotten interactions next to the retrain's).
"""
