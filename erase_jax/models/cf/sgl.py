"""SGL: LightGCN with a self-supervised contrastive task between two augmented graphs.

Wu et al., "Self-supervised Graph Learning for Recommendation", SIGIR 2021: two views of the
graph are drawn by node dropout (ND), edge dropout (ED) or random walk (RW, a fresh edge
dropout per layer) (section 3.1); the InfoNCE loss contrasts each node's two view embeddings
against all other nodes of the same type (eq. 10); the total loss is
L_main + ssl_weight * L_ssl + reg_weight * ||E^(0)||^2 (eq. 11).

Follows RecBole 1.2.1 (`SGL`): BPR is SUMMED over the batch (-logsigmoid), the regulariser is
EmbLoss (Frobenius norms / B) on the ego embeddings of users, positives and negatives, the
user InfoNCE uses the batch users and the item InfoNCE the batch POSITIVE items, both against
all users / items of view 2, and both are summed over the batch; scores come from the
un-augmented graph; xavier_uniform initialisation. Views are redrawn once per epoch, as
RecBole rebuilds them whenever the model enters train mode (here: `epoch_context`).

Differs from RecBole on repeated training pairs: RecBole's SGL (unlike its LightGCN) builds
its matrices from interaction rows, so a pair seen twice is an edge of weight 2 that counts
twice in the degrees, and ED samples interaction rows. Here every graph, the main one and the
views, uses unique pairs: ED keeps exactly int((1 - drop_ratio) * n_unique_edges) of them.
ND drops int(n * drop_ratio) users and as many items, like RecBole.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import CFModelBase
from erase_jax.models.cf.bpr import (
    UserItemEmbeddings,
    emb_loss,
    pairwise_scores,
    xavier_uniform,
)
from erase_jax.models.cf.graph import (
    BipartiteGraph,
    build_graph,
    light_gcn_embeddings,
    normalized_weights,
)

AUGMENTATIONS = ("ED", "ND", "RW")


@struct.dataclass
class SGLContext:
    """The training graph plus the edge weights of the two augmented views of this epoch.

    Attributes:
      graph: the full training graph (main view).
      view_weights: float32 [2, capacity] (ED, ND) or [2, n_layers, capacity] (RW). Until
        `epoch_context` is first called both views are the full graph.
      n_view_edges: int32 scalar, int((1 - drop_ratio) * n_edges), the edges an ED view keeps
        (computed on the host in float64 so it equals RecBole's count exactly).
    """

    graph: BipartiteGraph
    view_weights: jax.Array
    n_view_edges: jax.Array


def random_subset(key: jax.Array, eligible: jax.Array, n_keep) -> jax.Array:
    """bool mask of `n_keep` elements drawn uniformly without replacement among `eligible`."""
    priority = jnp.where(eligible, jax.random.uniform(key, eligible.shape), 2.0)
    order = jnp.argsort(priority)
    rank_is_kept = jnp.arange(eligible.shape[0]) < n_keep
    return jnp.zeros(eligible.shape, bool).at[order].set(rank_is_kept)


def info_nce(anchors: jax.Array, positives: jax.Array, candidates: jax.Array, tau: float, weight: jax.Array):
    """Row-weighted sum of -log(exp(<z1, z2>/tau) / sum_c exp(<z1, c>/tau)) on L2-normalised
    vectors (SGL eq. 10, RecBole's `calc_ssl_loss`), with a stable logsumexp."""
    z1, z2, all_z2 = _normalize(anchors), _normalize(positives), _normalize(candidates)
    positive_logits = jnp.sum(z1 * z2, axis=-1) / tau
    log_partition = jax.nn.logsumexp(z1 @ all_z2.T / tau, axis=-1)
    return jnp.sum(weight * (log_partition - positive_logits))


def _normalize(x: jax.Array) -> jax.Array:
    """torch.nn.functional.normalize: x / max(||x||_2, 1e-12) per row."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@register
@dataclasses.dataclass(frozen=True)
class SGL(CFModelBase):
    """SGL (Wu et al. SIGIR'21) as in RecBole; views are redrawn by `epoch_context`."""

    name: ClassVar[str] = "SGL"
    trainable: ClassVar[bool] = True

    embedding_size: int = 64
    n_layers: int = 3
    reg_weight: float = 1e-4
    type: str = "ED"
    drop_ratio: float = 0.1
    ssl_tau: float = 0.2
    ssl_weight: float = 0.1

    def __post_init__(self):
        if self.type not in AUGMENTATIONS:
            raise ValueError(f"SGL type must be one of {AUGMENTATIONS}, got {self.type!r}")

    def _embeddings(self, graph: BipartiteGraph) -> UserItemEmbeddings:
        return UserItemEmbeddings(graph.n_users, graph.n_items, self.embedding_size, xavier_uniform)

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> SGLContext:
        graph = build_graph(train, capacity)
        n_edges = int(np.asarray(graph.valid).sum())
        full_view = graph.weights if self.type != "RW" else jnp.stack([graph.weights] * self.n_layers)
        return SGLContext(
            graph=graph,
            view_weights=jnp.stack([full_view, full_view]),
            n_view_edges=jnp.asarray(int((1 - self.drop_ratio) * n_edges), jnp.int32),
        )

    def epoch_context(self, context: SGLContext, key: jax.Array) -> SGLContext:
        view_keys = jax.random.split(key, 2)
        views = jnp.stack([self.draw_view(context, view_key) for view_key in view_keys])
        return context.replace(view_weights=views)

    def draw_view(self, context: SGLContext, key: jax.Array) -> jax.Array:
        """Edge weights of one augmented graph, normalised with the sub-graph's own degrees."""
        graph = context.graph

        def edge_dropout(key):
            return normalized_weights(graph, random_subset(key, graph.valid, context.n_view_edges))

        def kept_nodes(key, n):
            return random_subset(key, jnp.ones(n, bool), n - int(n * self.drop_ratio))

        if self.type == "ED":
            return edge_dropout(key)
        if self.type == "RW":
            return jnp.stack([edge_dropout(layer_key) for layer_key in jax.random.split(key, self.n_layers)])
        user_key, item_key = jax.random.split(key)
        kept_users, kept_items = kept_nodes(user_key, graph.n_users), kept_nodes(item_key, graph.n_items)
        return normalized_weights(graph, graph.valid & kept_users[graph.users] & kept_items[graph.items])

    def init(self, key: jax.Array, context: SGLContext):
        return self._embeddings(context.graph).init(key)

    def loss(self, params, context: SGLContext, batch: Batch, key: jax.Array) -> jax.Array:
        del key  # the views' randomness is drawn per epoch, in `epoch_context`
        graph, weight = context.graph, batch["weight"]
        ego_users, ego_items = self._embeddings(graph).apply(params)

        def view(edge_weights):
            return light_gcn_embeddings(graph, edge_weights, ego_users, ego_items, self.n_layers)

        user_emb, item_emb = view(graph.weights)
        pos_scores, neg_scores = pairwise_scores(user_emb, item_emb, batch)
        bpr = jnp.sum(weight * -jax.nn.log_sigmoid(pos_scores - neg_scores))
        regularizer = emb_loss((ego_users[batch["users"]], ego_items[batch["pos"]], ego_items[batch["neg"]]), weight)

        (users1, items1), (users2, items2) = view(context.view_weights[0]), view(context.view_weights[1])
        users, pos = batch["users"], batch["pos"]
        ssl_user = info_nce(users1[users], users2[users], users2, self.ssl_tau, weight)
        ssl_item = info_nce(items1[pos], items2[pos], items2, self.ssl_tau, weight)
        return bpr + self.reg_weight * regularizer + self.ssl_weight * (ssl_user + ssl_item)

    def score_factors(self, params, context: SGLContext) -> tuple[jax.Array, jax.Array]:
        """(final user table, final item table) on the training graph: scores are their inner products."""
        graph = context.graph
        ego_users, ego_items = self._embeddings(graph).apply(params)
        return light_gcn_embeddings(graph, graph.weights, ego_users, ego_items, self.n_layers)

    def scores(self, params, context: SGLContext, query: Batch) -> jax.Array:
        user_emb, item_emb = self.score_factors(params, context)
        return user_emb[query["users"]] @ item_emb.T
