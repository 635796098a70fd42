"""EASE: the closed-form item-item linear autoencoder (a non-learned CF baseline).

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019, equation (8):

    P = (X^T X + lambda I)^-1,    B = I - P diag(1 / diag(P)),    score(u, j) = (X B)[u, j]

B minimises ||X - X B||_F^2 + lambda ||B||_F^2 subject to diag(B) = 0; off its diagonal it
satisfies the normal equations (X^T X + lambda I) B = X^T X + diag(mu) for some vector mu
(the Lagrange multipliers of the constraint). X is the user-item count matrix as RecBole 1.2.1
builds it (`inter_matrix(form="csr")`: a pair seen twice counts 2; ItemKNN reads the same
matrix). `reg_weight` is lambda; its default 250 is the original's (ERASE's RecBole EASE config).

Memory: B is a dense [n_items, n_items] matrix. It is solved on the host in float64 (the Gram
matrix, LAPACK's working copy and the inverse: three n_items^2 * 8-byte arrays) and kept on the
device in float32; `prepare` refuses a catalogue whose host solve would exceed `max_memory_gib`
(default 4 GiB: up to 13,377 items) with an error that states the bound. Scoring Q users builds their
count rows [Q, n_items] on the device and multiplies by B.

Unlearning is exact: the protocol rebuilds the context (`prepare`) from the rows that remain
after each request, so the scores are those of EASE fitted without the removed rows.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import NonLearnedCFModel
from erase_jax.models.cf.itemknn import history_table, interaction_counts, query_count_columns

# float64 n_items x n_items arrays alive at once on the host: the Gram matrix, LAPACK's copy of it, the inverse
HOST_COPIES = 3


@struct.dataclass
class EASEContext:
    """weights: B, float32 [n_items, n_items] with a zero diagonal; history_items,
    history_counts: [n_users, longest history], each user's distinct items and counts."""

    weights: jax.Array
    history_items: jax.Array
    history_counts: jax.Array


def ease_weights(counts, reg_weight: float) -> np.ndarray:
    """B (float64 [n_items, n_items]) of Steck 2019, eq. 8, for the count matrix X (scipy sparse)."""
    gram = (counts.T @ counts).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += reg_weight
    weights = np.linalg.inv(gram)  # P
    del gram
    weights /= -np.diag(weights)[None, :]  # B[i, j] = -P[i, j] / P[j, j] off the diagonal
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def memory_gib(n_items: int) -> float:
    """GiB of the host solve for a catalogue of n_items (HOST_COPIES float64 item x item arrays)."""
    return HOST_COPIES * 8 * n_items**2 / 2**30


@register
@dataclasses.dataclass(frozen=True)
class EASE(NonLearnedCFModel):
    """EASE (Steck 2019), closed form; `prepare` computes everything, the parameters are empty.

    reg_weight: lambda, the L2 penalty on B (the original's 250).
    max_memory_gib: the largest host solve `prepare` attempts (see the module docstring).
    """

    name: ClassVar[str] = "EASE"

    reg_weight: float = 250.0
    max_memory_gib: float = 4.0

    def __post_init__(self):
        if not self.reg_weight > 0:
            raise ValueError(f"EASE: reg_weight must be > 0 (X^T X + reg_weight I must be invertible), got {self.reg_weight}")
        if not self.max_memory_gib > 0:
            raise ValueError(f"EASE: max_memory_gib must be > 0, got {self.max_memory_gib}")

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> EASEContext:
        del capacity  # shapes depend on n_items and the longest history
        needed = memory_gib(train.n_items)
        if needed > self.max_memory_gib:
            largest = int(math.sqrt(self.max_memory_gib * 2**30 / (HOST_COPIES * 8)))
            raise ValueError(
                f"EASE needs a dense items x items solve: {train.n_items} items take {needed:.1f} GiB on the host "
                f"({HOST_COPIES} float64 matrices), above model_params.max_memory_gib = {self.max_memory_gib} GiB "
                f"(at most {largest} items); raise max_memory_gib if the machine has the memory, or use ItemKNN"
            )
        counts = interaction_counts(train)
        history_items, history_counts = history_table(counts)
        return EASEContext(
            weights=jnp.asarray(ease_weights(counts, self.reg_weight), jnp.float32),
            history_items=jnp.asarray(history_items),
            history_counts=jnp.asarray(history_counts),
        )

    def scores(self, params, context: EASEContext, query: Batch) -> jax.Array:
        count_columns = query_count_columns(context.history_items, context.history_counts, query["users"],
                                            context.weights.shape[0])
        return count_columns.T @ context.weights
