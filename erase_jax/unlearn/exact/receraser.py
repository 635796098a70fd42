"""RecEraser: balanced shards plus attention-based adaptive aggregation of the submodels.

Chen et al., "Recommendation Unlearning", WWW'22. The partition (UBP / IBP / InBP, Section
4.2) is `partition.balanced_partition`; the shard training is the shard ensemble's
(`ensemble.py`) and the request handling SISA's (`sisa.py`); the attention aggregator of
Section 4.3 (Eq. 5-8) is `aggregators.AttentionAggregator`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from erase_jax.unlearn.exact.sisa import SISA
from erase_jax.unlearn.methods.base import register


@register
@dataclasses.dataclass(frozen=True)
class RecEraser(SISA):
    """SISA's exact sharded retraining with RecEraser's InBP partition and attention aggregation."""

    name: ClassVar[str] = "receraser"

    partition: str = "inbp"
    aggregation: str = "attention"
