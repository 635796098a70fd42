"""BPR-MF: matrix factorisation trained with Bayesian Personalized Ranking.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009: score
x_ui = <e_u, e_i> (section 4.3.1) and the BPR-Opt criterion, -ln sigmoid(x_ui - x_uj) for a
positive item i and a sampled negative j (eq. 4).

Follows RecBole 1.2.1 (`BPR`, `BPRLoss`, `EmbLoss`, `xavier_normal_initialization`): the loss is
-mean(log(1e-10 + sigmoid(x_ui - x_uj))), there is no L2 term (the ERASE config has
weight_decay 0), and embeddings start from torch's xavier_normal. This module also holds the
pieces LightGCN and SGL share: the user/item embedding tables, BPRLoss and EmbLoss.

Batch rows carry a `weight`: the row's multiplicity, 1 for a real row and 0 for padding. Every
loss here equals RecBole's loss on the batch in which each row appears `weight` times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import CFModelBase

# torch.nn.init.xavier_{normal,uniform}_ on an embedding weight [num, dim]: std = sqrt(2 / (num + dim))
# resp. bound = sqrt(6 / (num + dim)). Flax's glorot_normal would truncate the normal; torch does not.
xavier_normal = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
xavier_uniform = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class UserItemEmbeddings(nn.Module):
    """The two embedding tables of a CF model; calling it returns ([n_users, d], [n_items, d])."""

    n_users: int
    n_items: int
    embedding_size: int
    embedding_init: Callable

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        users = nn.Embed(self.n_users, self.embedding_size, embedding_init=self.embedding_init, name="user_embedding")
        items = nn.Embed(self.n_items, self.embedding_size, embedding_init=self.embedding_init, name="item_embedding")
        return users.embedding, items.embedding


@struct.dataclass
class CFShape:
    """Context of a model that needs nothing from the training data but its sizes."""

    n_users: int = struct.field(pytree_node=False)
    n_items: int = struct.field(pytree_node=False)


def bpr_loss(pos_scores: jax.Array, neg_scores: jax.Array, weight: jax.Array) -> jax.Array:
    """RecBole `BPRLoss`: -mean(log(1e-10 + sigmoid(pos - neg))), rows weighted by `weight`."""
    row_losses = -jnp.log(1e-10 + jax.nn.sigmoid(pos_scores - neg_scores))
    return jnp.sum(weight * row_losses) / total_weight(weight)


def emb_loss(embeddings: tuple[jax.Array, ...], weight: jax.Array, require_pow: bool = False) -> jax.Array:
    """RecBole `EmbLoss` (norm 2) over row-weighted [B, d] matrices, B = sum(weight).

    require_pow=False: sum of the matrices' Frobenius norms / B.
    require_pow=True: sum of their squared Frobenius norms / B / 2.
    """
    squared_norms = [jnp.sum(weight[:, None] * jnp.square(e)) for e in embeddings]
    if require_pow:
        total = sum(squared_norms) / 2
    else:
        total = sum(_safe_sqrt(s) for s in squared_norms)
    return total / total_weight(weight)


def total_weight(weight: jax.Array) -> jax.Array:
    """The batch size B of the unpadded batch (kept >= 1e-12 so an all-padding batch gives 0)."""
    return jnp.maximum(jnp.sum(weight), 1e-12)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt with gradient 0 instead of NaN at x = 0 (an all-padding batch)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def pairwise_scores(user_emb: jax.Array, item_emb: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """<e_u, e_pos> and <e_u, e_neg> for every row of a CF batch."""
    users = user_emb[batch["users"]]
    pos_scores = jnp.sum(users * item_emb[batch["pos"]], axis=-1)
    neg_scores = jnp.sum(users * item_emb[batch["neg"]], axis=-1)
    return pos_scores, neg_scores


@register
@dataclasses.dataclass(frozen=True)
class BPR(CFModelBase):
    """Matrix factorisation with the BPR loss (Rendle et al. UAI'09), as in RecBole.

    `reg_weight` (default 0, RecBole's BPR has no regulariser) adds LightGCN's L2 term on the
    batch's embeddings, reg_weight * EmbLoss(users, positives, negatives), the form most
    published BPR baselines (e.g. the RecEraser paper's) train with.
    """

    name: ClassVar[str] = "BPR"
    user_rows_are_local: ClassVar[bool] = True  # score <e_u, e_i>: the loss reads only the batch users' rows
    trainable: ClassVar[bool] = True
    output_loss: ClassVar[str] = "logistic"  # what `loss` is of `output_loss_parts`' outputs

    embedding_size: int = 64
    reg_weight: float = 0.0
    reg_require_pow: bool = False

    @property
    def loss_is_row_mean(self) -> bool:
        """The loss is a weighted mean of per-row terms (no norm-form regulariser), so its rows
        may be split over devices (`unlearn.influence.data_parallel_loss`)."""
        return self.reg_weight == 0 or self.reg_require_pow

    def _embeddings(self, context: CFShape) -> UserItemEmbeddings:
        return UserItemEmbeddings(context.n_users, context.n_items, self.embedding_size, xavier_normal)

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> CFShape:
        del capacity  # BPR keeps no per-pair data
        return CFShape(train.n_users, train.n_items)

    def init(self, key: jax.Array, context: CFShape):
        return self._embeddings(context).init(key)

    def loss(self, params, context: CFShape, batch: Batch, key: jax.Array) -> jax.Array:
        del key
        user_emb, item_emb = self._embeddings(context).apply(params)
        pos_scores, neg_scores = pairwise_scores(user_emb, item_emb, batch)
        loss = bpr_loss(pos_scores, neg_scores, batch["weight"])
        if self.reg_weight:
            loss = loss + self._penalty(user_emb, item_emb, batch)
        return loss

    def output_loss_parts(self, params, context: CFShape, batch: Batch, key: jax.Array):
        """(margins x_ui - x_uj [n], row weights, L2 term or None): `loss` is the weighted mean of
        -log(1e-10 + sigmoid(margin)) plus the L2 term. The hook of the Gauss-Newton curvature
        (`erase_jax.unlearn.influence.gauss_newton_operator`)."""
        del key
        user_emb, item_emb = self._embeddings(context).apply(params)
        pos_scores, neg_scores = pairwise_scores(user_emb, item_emb, batch)
        penalty = self._penalty(user_emb, item_emb, batch) if self.reg_weight else None
        return pos_scores - neg_scores, batch["weight"], penalty

    def _penalty(self, user_emb: jax.Array, item_emb: jax.Array, batch: Batch) -> jax.Array:
        batch_embeddings = (user_emb[batch["users"]], item_emb[batch["pos"]], item_emb[batch["neg"]])
        return self.reg_weight * emb_loss(batch_embeddings, batch["weight"], self.reg_require_pow)

    def score_factors(self, params, context: CFShape) -> tuple[jax.Array, jax.Array]:
        """(user table, item table): scores are their inner products (`evaluators.sharded_ranking`)."""
        return self._embeddings(context).apply(params)

    def scores(self, params, context: CFShape, query: Batch) -> jax.Array:
        user_emb, item_emb = self.score_factors(params, context)
        return user_emb[query["users"]] @ item_emb.T
