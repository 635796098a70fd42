"""LightGCN: embeddings smoothed over the user-item graph, trained with BPR.

He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation",
SIGIR 2020: e^(k+1) = D^-1/2 A D^-1/2 e^(k) (eq. 7), final embedding = mean of layers 0..K
(eq. 8, alpha_k = 1 / (K + 1)), score = <e_u, e_i> (eq. 9), BPR loss plus L2 on the layer-0
("ego") embeddings of the batch (eq. 15).

Follows RecBole 1.2.1 (`LightGCN`): graph from unique training pairs, degrees + 1e-7, BPRLoss
(mean) + reg_weight * EmbLoss(ego embeddings of users, positives, negatives; `require_pow`),
xavier_uniform initialisation. The graph is the context, not a parameter: removing edges is
`prepare(remaining_train, capacity=same)`, which keeps every shape.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import CFModelBase
from erase_jax.models.cf.bpr import (
    UserItemEmbeddings,
    bpr_loss,
    emb_loss,
    pairwise_scores,
    xavier_uniform,
)
from erase_jax.models.cf.graph import BipartiteGraph, build_graph, light_gcn_embeddings


@register
@dataclasses.dataclass(frozen=True)
class LightGCN(CFModelBase):
    """LightGCN (He et al. SIGIR'20) as in RecBole; the context is the normalised graph."""

    name: ClassVar[str] = "LightGCN"
    trainable: ClassVar[bool] = True
    output_loss: ClassVar[str] = "logistic"  # what `loss` is of `output_loss_parts`' outputs

    embedding_size: int = 64
    n_layers: int = 2
    reg_weight: float = 1e-4
    require_pow: bool = False
    # graph products differentiable in forward mode (`graph.propagate`): only on the twin that
    # `forward_mode()` returns, for the unlearning methods' curvature products; training keeps
    # the faster custom VJP. A class attribute, so that it is not a configuration key.
    forward_mode_graph: ClassVar[bool] = False

    @property
    def loss_is_row_mean(self) -> bool:
        """Row-mean loss (see BPR.loss_is_row_mean): not with RecBole's norm-form regulariser."""
        return self.reg_weight == 0 or self.require_pow

    def _embeddings(self, graph: BipartiteGraph) -> UserItemEmbeddings:
        return UserItemEmbeddings(graph.n_users, graph.n_items, self.embedding_size, xavier_uniform)

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> BipartiteGraph:
        return build_graph(train, capacity)

    def init(self, key: jax.Array, context: BipartiteGraph):
        return self._embeddings(context).init(key)

    def forward_mode(self) -> LightGCN:
        """The same model with graph products that forward-mode differentiation can go through."""
        return ForwardModeLightGCN(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def _forward(self, params, graph: BipartiteGraph):
        """((ego users, ego items), (final users, final items)), all users and items at once."""
        ego_users, ego_items = self._embeddings(graph).apply(params)
        final = light_gcn_embeddings(graph, graph.weights, ego_users, ego_items, self.n_layers, self.forward_mode_graph)
        return (ego_users, ego_items), final

    def loss(self, params, context: BipartiteGraph, batch: Batch, key: jax.Array) -> jax.Array:
        del key
        (ego_users, ego_items), (user_emb, item_emb) = self._forward(params, context)
        pos_scores, neg_scores = pairwise_scores(user_emb, item_emb, batch)
        ego_batch = (ego_users[batch["users"]], ego_items[batch["pos"]], ego_items[batch["neg"]])
        regularizer = emb_loss(ego_batch, batch["weight"], self.require_pow)
        return bpr_loss(pos_scores, neg_scores, batch["weight"]) + self.reg_weight * regularizer

    def output_loss_parts(self, params, context: BipartiteGraph, batch: Batch, key: jax.Array):
        """(margins [n], row weights, L2 term): `loss` is the weighted mean of
        -log(1e-10 + sigmoid(margin)) plus the L2 term (as `BPR.output_loss_parts`; the hook of
        the Gauss-Newton curvature, which linearises it: use it on `forward_mode()`)."""
        del key
        (ego_users, ego_items), (user_emb, item_emb) = self._forward(params, context)
        pos_scores, neg_scores = pairwise_scores(user_emb, item_emb, batch)
        ego_batch = (ego_users[batch["users"]], ego_items[batch["pos"]], ego_items[batch["neg"]])
        penalty = self.reg_weight * emb_loss(ego_batch, batch["weight"], self.require_pow)
        return pos_scores - neg_scores, batch["weight"], penalty

    def score_factors(self, params, context: BipartiteGraph) -> tuple[jax.Array, jax.Array]:
        """(final user table, final item table): scores are their inner products."""
        return self._forward(params, context)[1]

    def scores(self, params, context: BipartiteGraph, query: Batch) -> jax.Array:
        user_emb, item_emb = self.score_factors(params, context)
        return user_emb[query["users"]] @ item_emb.T


@dataclasses.dataclass(frozen=True)
class ForwardModeLightGCN(LightGCN):
    """`LightGCN.forward_mode()`: the same model and parameters, graph products without the
    custom VJP (not registered: never built from a configuration)."""

    forward_mode_graph: ClassVar[bool] = True
