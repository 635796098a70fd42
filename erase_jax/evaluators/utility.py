"""Utility: the full-ranking test metrics of a model on the data of its checkpoint.

The test split is recomputed from the data without the interactions removed through the
checkpoint (the original recomputes it the same way for every evaluated model, spec 5.1), so
the trained model, an unlearned model and the retrain of a checkpoint are ranked on the same test
rows. The metrics and cut-offs are the run's `eval` configuration; the task ranks (CF:
`cf_ranking`, training items masked; SBR: `sequence_ranking`, every test prefix).

Keys: `test_<metric>@k`, e.g. `test_recall@20`, `test_ndcg@10`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from erase_jax.evaluators.base import Checkpoint, register
from erase_jax.evaluators.scoring import prefix_keys


@register
@dataclasses.dataclass(frozen=True)
class Utility:
    name: ClassVar[str] = "utility"

    def evaluate(self, checkpoint: Checkpoint) -> dict:
        evaluated = checkpoint.evaluated
        test = checkpoint.view.test_metrics(evaluated.model, evaluated.params, evaluated.context)
        return prefix_keys("test_", test)
