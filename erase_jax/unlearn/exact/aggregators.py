"""Aggregators of a shard ensemble: the mean of the submodels' scores (SISA), RecEraser's attention.

Chen et al., "Recommendation Unlearning", WWW'22. The partition (UBP / IBP / InBP, Section
4.2) is `partition.balanced_partition`; the shard training is `ensemble.py`'s and the request
handling SISA's (`sisa.py`). What RecEraser adds is the aggregator of Section 4.3 (Eq. 5-8),
here a recommender in its own right whose context is the frozen, stacked submodel embeddings:

    transfer   p_{u,i}^tr = W_i p_{u,i} + b_i,   q_{v,i}^tr = W_i q_{v,i} + b_i      (Eq. 5)
    attention  a_{u,i} = softmax_i( h1 . ReLU(W1 p_{u,i}^tr + b1) )                  (Eq. 6)
               b_{v,i} = softmax_i( h2 . ReLU(W2 q_{v,i}^tr + b2) )                  (Eq. 7)
    aggregate  p_u = sum_i a_{u,i} p_{u,i}^tr,  q_v = sum_i b_{v,i} q_{v,i}^tr,  y = p_u . q_v  (Eq. 8)

It trains with the base model's loss (BPR, plus `reg_weight` x EmbLoss of the batch's
aggregated embeddings, and `transfer_reg` x ||(W, b)||^2 / 2 as the public code's penalty on
the transfer) over all remaining training data while the submodels stay frozen: the stacked
submodel embeddings are computed once per (re)training and are the aggregator's constant
context, so a step never runs a submodel. Because it sees all data it is retrained after
every request (from scratch, or warm-started from the previous aggregator:
`ensemble.ShardEnsemble.train_aggregator`).

Cost of a step: Eq. 5-7 are row-wise, so for a batch of B rows the loss either aggregates
the 3B gathered rows (users, positives, negatives) or aggregates the whole user and item
tables once and gathers from them. Both give the same loss and gradient; the tables cost
n_users + n_items rows whatever B is, so from 3B > n_users + n_items on (large batches) they
are cheaper, and `loss` picks the cheaper form.

Choices the paper leaves open: W_i starts at the identity and b_i, b1, b2 at zero, h1 and h2
at small random values, so training starts near the plain average of the submodels'
embeddings (the public code draws W_i and b_i at random); W1, W2 are xavier-normal.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from erase_jax.models.cf.bpr import bpr_loss, emb_loss, xavier_normal


@struct.dataclass
class ShardEmbeddings:
    """The frozen submodels as an aggregator's context: [S, n_users, d] and [S, n_items, d]."""

    users: jax.Array
    items: jax.Array


@dataclasses.dataclass(frozen=True)
class MeanOfScores:
    """SISA's aggregation as a CF recommender: the mean of the submodels' scores.

    For dot-product models that is <mean over shards of p_{u,s} q_{v,s}>, computed as one
    contraction over (shard, dimension).
    """

    name: ClassVar[str] = "MeanOfScores"
    task: ClassVar[str] = "CF"
    trainable: ClassVar[bool] = False

    def init(self, key, context: ShardEmbeddings):
        del key, context
        return {}

    def scores(self, params, context: ShardEmbeddings, query) -> jax.Array:
        del params
        users = context.users[:, query["users"]]
        return jnp.einsum("sqd,sid->qi", users, context.items) / context.users.shape[0]


@dataclasses.dataclass(frozen=True)
class AttentionAggregator:
    """Eq. 5-8 over S frozen submodels; a CF recommender (init / loss / scores)."""

    name: ClassVar[str] = "AttentionAggregator"
    task: ClassVar[str] = "CF"
    trainable: ClassVar[bool] = True

    attention_size: int = 32
    reg_weight: float = 0.0
    reg_require_pow: bool = False  # EmbLoss form of `reg_weight`, as the base BPR's
    transfer_reg: float = 0.0
    user_dropout: float = 0.0  # dropout rate on p_u in training (the public code keeps 0.7)

    def epoch_context(self, context, key):
        del key
        return context

    def init(self, key: jax.Array, context: ShardEmbeddings):
        n_shards, _, d = context.users.shape
        keys = jax.random.split(key, 4)
        k = self.attention_size

        def attention(w_key, h_key):
            return {
                "w": xavier_normal(w_key, (d, k)),
                "b": jnp.zeros(k),
                "h": 0.01 * jax.random.normal(h_key, (k,)),
            }

        return {
            "transfer_w": jnp.broadcast_to(jnp.eye(d), (n_shards, d, d)),
            "transfer_b": jnp.zeros((n_shards, d)),
            "user_attention": attention(keys[0], keys[1]),
            "item_attention": attention(keys[2], keys[3]),
        }

    def aggregate(self, params, stacked: jax.Array, which: str) -> tuple[jax.Array, jax.Array]:
        """Aggregated embeddings [N, d] and attention weights [N, S] of `stacked` [S, N, d]."""
        transferred = jnp.einsum("snd,sed->sne", stacked, params["transfer_w"]) + params["transfer_b"][:, None, :]
        att = params[f"{which}_attention"]
        logits = jnp.einsum("snk,k->sn", jax.nn.relu(transferred @ att["w"] + att["b"]), att["h"])
        weights = jax.nn.softmax(logits, axis=0)  # over shards
        return jnp.einsum("sn,snd->nd", weights, transferred), weights.T

    def attention_weights(self, params, context: ShardEmbeddings) -> tuple[jax.Array, jax.Array]:
        """Per user [n_users, S] and per item [n_items, S] weights over the submodels."""
        return self.aggregate(params, context.users, "user")[1], self.aggregate(params, context.items, "item")[1]

    def loss(self, params, context: ShardEmbeddings, batch, key: jax.Array, from_tables: bool | None = None) -> jax.Array:
        """BPR on the aggregated embeddings; `from_tables` None picks the cheaper equal form."""
        n_rows = batch["users"].shape[0]
        if from_tables is None:
            from_tables = 3 * n_rows > context.users.shape[1] + context.items.shape[1]
        if from_tables:
            user_table, _ = self.aggregate(params, context.users, "user")
            item_table, _ = self.aggregate(params, context.items, "item")
            users, pos, neg = user_table[batch["users"]], item_table[batch["pos"]], item_table[batch["neg"]]
        else:
            users, _ = self.aggregate(params, context.users[:, batch["users"]], "user")
            pos, _ = self.aggregate(params, context.items[:, batch["pos"]], "item")
            neg, _ = self.aggregate(params, context.items[:, batch["neg"]], "item")
        scoring_users = users
        if self.user_dropout:
            keep = jax.random.bernoulli(key, 1.0 - self.user_dropout, users.shape)
            scoring_users = jnp.where(keep, users / (1.0 - self.user_dropout), 0.0)
        loss = bpr_loss(jnp.sum(scoring_users * pos, -1), jnp.sum(scoring_users * neg, -1), batch["weight"])
        if self.reg_weight:
            loss = loss + self.reg_weight * emb_loss((users, pos, neg), batch["weight"], self.reg_require_pow)
        if self.transfer_reg:
            loss = loss + self.transfer_reg * (jnp.sum(params["transfer_w"] ** 2) + jnp.sum(params["transfer_b"] ** 2)) / 2
        return loss

    def scores(self, params, context: ShardEmbeddings, query) -> jax.Array:
        users, _ = self.aggregate(params, context.users[:, query["users"]], "user")
        items, _ = self.aggregate(params, context.items, "item")
        return users @ items.T
