"""Random: every user gets a uniformly random ranking of all items (a non-learned baseline).

The floor every CF model must beat: its expected Recall@k is k / (candidate items). RecBole
1.2.1's `Random` draws fresh uniform scores at every call from a seeded torch generator, so the
same user ranks differently in two evaluations. Here the draw is a function of the run's
seed and the user: user u's scores are a uniformly random permutation of 0 .. n_items - 1
drawn with the key fold_in(run key, u). So the full ranking is a permutation without ties, and
the same model scores the same user the same way at every checkpoint (the trained model, its
unlearned copies and the agreement measures compare like with like); a retrain (or another
seed) draws other rankings.

The run's key reaches the scores through the parameters: `init` keeps one float32 drawn from
it (`salt`), whose bits are the key of the draws; the loss is 0 and nothing trains it. The
training data do not enter the scores, so unlearning has nothing to remove.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import NonLearnedCFModel


@struct.dataclass
class RandomContext:
    """n_items: the catalogue size (static, it fixes the scores' shape)."""

    n_items: int = struct.field(pytree_node=False)


def user_permutations(salt: jax.Array, users: jax.Array, n_items: int) -> jax.Array:
    """float32 [Q, n_items]: row q a uniformly random permutation of 0 .. n_items - 1, drawn
    with the key fold_in(key(bits of salt), users[q])."""
    base = jax.random.key(jax.lax.bitcast_convert_type(salt, jnp.uint32))
    draw = lambda user: jax.random.permutation(jax.random.fold_in(base, user), n_items)
    return jax.vmap(draw)(users).astype(jnp.float32)  # integers below 2^24 are exact in float32


@register
@dataclasses.dataclass(frozen=True)
class Random(NonLearnedCFModel):
    """Uniformly random rankings, seeded by the run (see the module docstring); no knobs."""

    name: ClassVar[str] = "Random"

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> RandomContext:
        del capacity
        return RandomContext(train.n_items)

    def init(self, key: jax.Array, context: RandomContext):
        return {"salt": jax.random.uniform(key, (), jnp.float32)}

    def scores(self, params, context: RandomContext, query: Batch) -> jax.Array:
        return user_permutations(params["salt"], query["users"], context.n_items)
