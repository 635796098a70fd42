"""DNNTSP: weighted GCNs over a user's dynamic co-occurrence graphs, attention over time, gated item update.

Yu et al., "Predicting Temporal Sets with Deep Neural Networks", KDD 2020, as ERASE's RecBole port
(`dnntsp.py`) trains it (next-basket spec 2.1). Per example (one user's history of T_u baskets):

    nodes V = the distinct history items; c(i, j) = number of history baskets holding both i != j;
    w(i, j) = c(i, j) / m, self weight 1 / m, m = max(1, max c)              (co-occurrence graph)
    A_t[i, j] = w(i, j) if i and j are both in basket t, A_t[i, i] = 1 / m, else 0   (graph of step t)
    H^{l+1}_t = ReLU(Norm((A_t H^l_t) W_l + b_l)),  H^0_t = E[V] for every t     (2 weighted GCN layers)
    Z = concat_h softmax_causal(Q_h K_h^T / sqrt(d_h)) V_h, Q/K/V = H W_{q,k,v}   (per node, over time)
    v_i = sum_{t < T_u} (z_{i,t} . a) z_{i,t}                (temporal aggregation, no softmax)
    e_i = (1 - alpha_i) E_i + alpha_i v_i for i in V, e_i = E_i otherwise           (global gated update)
    score_i = e_i . w_o + b_o for every item                 (loss: the base's multi-label soft margin)

Hyperparameters as the original: d = 32, 2 GCN layers, 4 heads of d / 4 = 8. Init: embeddings
N(0, 0.02), dense weights Xavier-uniform, biases 0, alpha U[0, 1), norm scale 1 and bias 0.
Parameters: tensor i drawn from key i of `split(init_key, n)` (`erase_jax.models.layers`).

Batch layout (`erase_jax.data.baskets`): a history is W flat occurrences (item, basket position).
The graph is built on device inside jit (`cooccurrence_graph`) with static budgets derived from
[b, W]: at most W nodes per example and T = min(W, max_history_baskets) steps (a history of W
occurrences has at most W baskets), so an epoch compiles once per width. Past a user's T_u steps
the adjacency is the identity, as the original pads; the causal mask and the sum over t < T_u make
those steps inert for the user's own nodes. Nodes are numbered by first occurrence (the original
sorts them); the model is permutation-equivariant in the nodes.

Graph formulation (measured in `benchmarks/nbr_dnntsp_graph.py`, result
`benchmarks/results/nbr_dnntsp_graph.json`): the neighbour sum A_t H_t is computed as
one dense product per example over the [W, W] occurrence pairs of the same basket (weight
w(item o, item o')), then each occurrence's message is segment-summed to its (node, step). An
edge list (jraph-style GraphsTuple: one edge per same-basket occurrence pair, padded to the
static budget W (W - 1) per example, since [b, W] bounds nothing tighter) gathers and scatters
[E, d] arrays that the dense product never builds, and was slower at every measured width.
jraph itself is not installed in the project environment; `jax.ops.segment_sum` is the same op.

Deviations from the original (next-basket spec 2.1, 5.21):
* Norm: the original's BatchNorm1d takes statistics over all nodes and steps of the batch, so one
  example's loss depends on the others in its batch, which the influence-function methods cannot
  have (they need per-example losses). Default `norm="layer"`: LayerNorm over the features of each
  (node, step). `norm="batch"` is the original's BatchNorm with batch statistics over the real
  nodes and the batch's first max(T_u) steps, always (no running averages: evaluation also uses
  the batch's statistics, and the original's T_max = 1 fallback to running statistics is absent).
* An empty history (possible after unlearning) has no nodes: its scores are the user-independent
  E_i . w_o + b_o (the original inserts a dummy node for item 1, 5.21).
* Items repeated inside a basket count once (the original de-duplicates each basket too).
* The padding item (row n_items of the tables) is never scored.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from erase_jax.models.base import register
from erase_jax.models.layers import dense, keyed, normal, split_keys, xavier_uniform
from erase_jax.models.nbr.base import BasketModel, BasketShape


class BasketGraph(NamedTuple):
    """The co-occurrence graphs of a batch, padded to V = W nodes and T steps per example."""

    node_items: jax.Array  # int [b, V]: the node's item, `pad` past the example's nodes
    node_mask: jax.Array  # bool [b, V]
    alias: jax.Array  # int [b, W]: the node of each occurrence (0 where none)
    step: jax.Array  # int [b, W]: the basket (step) of each occurrence, clipped to T - 1
    occurrence_mask: jax.Array  # bool [b, W]: real, and the first of its item in its basket
    membership: jax.Array  # float [b, T, V]: 1 where the node is in basket t
    weights: jax.Array  # float [b, V, V]: c(i, j) / m, zero diagonal
    self_weight: jax.Array  # float [b, T]: 1 / m at the user's steps, 1 past them
    pair_weight: jax.Array  # float [b, W, W]: weights[alias o, alias o'] for o != o' in one basket
    step_mask: jax.Array  # bool [b, T]: t < n_baskets


def cooccurrence_graph(items, baskets, lengths, n_baskets, pad: int, n_steps: int) -> BasketGraph:
    """The per-user co-occurrence graphs (module docstring) of a batch of flat histories; jittable."""
    b, width = items.shape
    positions = jnp.arange(width)
    valid = positions[None, :] < lengths[:, None]
    pair_valid = valid[:, :, None] & valid[:, None, :]
    same_item = (items[:, :, None] == items[:, None, :]) & pair_valid
    same_basket = (baskets[:, :, None] == baskets[:, None, :]) & pair_valid
    earlier = positions[None, :] < positions[:, None]  # [o, o']: o' before o
    occurrence = valid & ~jnp.any(same_item & same_basket & earlier, axis=2)
    first = jnp.where(valid, jnp.argmax(same_item, axis=1), positions[None, :])  # first position of the item
    is_node = valid & (first == positions[None, :])
    alias = jnp.where(valid, jnp.take_along_axis(jnp.cumsum(is_node, axis=1) - 1, first, axis=1), 0)
    rows = jnp.arange(b)[:, None]
    node_items = jnp.full((b, width), pad, items.dtype).at[rows, jnp.where(is_node, alias, width)].set(items, mode="drop")
    node_mask = positions[None, :] < jnp.sum(is_node, axis=1)[:, None]
    step = jnp.clip(baskets, 0, n_steps - 1)
    membership = jnp.zeros((b, n_steps, width)).at[rows, step, alias].add(occurrence.astype(jnp.float32))
    counts = jnp.einsum("btu,btv->buv", membership, membership) * (1.0 - jnp.eye(width))
    scale = 1.0 / jnp.maximum(jnp.max(counts, axis=(1, 2)), 1.0)  # 1 / m
    weights = counts * scale[:, None, None]
    distinct = occurrence[:, :, None] & occurrence[:, None, :] & ~jnp.eye(width, dtype=bool)
    pair_weight = jnp.where(same_basket & distinct, weights[rows[:, :, None], alias[:, :, None], alias[:, None, :]], 0.0)
    step_mask = jnp.arange(n_steps)[None, :] < n_baskets[:, None]
    self_weight = jnp.where(step_mask, scale[:, None], 1.0)
    return BasketGraph(node_items, node_mask, alias, step, occurrence, membership, weights, self_weight, pair_weight, step_mask)


def step_adjacency(graph: BasketGraph) -> jax.Array:
    """The dense A_t [b, T, V, V] of the graphs (for tests and reference computations)."""
    m = graph.membership
    adjacency = m[:, :, :, None] * m[:, :, None, :] * graph.weights[:, None]
    return adjacency + graph.self_weight[:, :, None, None] * jnp.eye(m.shape[-1])


def parameter_shapes(n_items: int, d: int, n_layers: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes in the order of their keys (split(init_key, n)); row n_items = padding."""
    shapes = {"item_embedding": (n_items + 1, d), "alpha": (n_items + 1, 1)}
    for layer in range(n_layers):
        shapes |= {f"gcn_{layer}": (d, d), f"gcn_{layer}_b": (d,), f"norm_{layer}_scale": (d,), f"norm_{layer}_bias": (d,)}
    return shapes | {"query": (d, d), "key": (d, d), "value": (d, d), "temporal": (d, 1), "output": (d, 1), "output_b": (1,)}


def initialiser(name: str):
    if name == "item_embedding":
        return normal(0.02)
    if name == "alpha":
        return lambda key, shape: jax.random.uniform(key, shape)
    if name.endswith("_b") or name.endswith("_bias"):
        return lambda key, shape: jnp.zeros(shape)
    if name.endswith("_scale"):
        return lambda key, shape: jnp.ones(shape)
    return xavier_uniform


class DNNTSPNetwork(nn.Module):
    """The DNNTSP network (module docstring); call on a batch's (items, baskets, lengths, n_baskets)."""

    n_items: int
    embedding_size: int
    n_layers: int
    n_heads: int
    norm: str
    max_steps: int
    norm_eps: float = 1e-5
    init_key: jax.Array | None = None

    def setup(self):
        shapes = parameter_shapes(self.n_items, self.embedding_size, self.n_layers)
        self.tensors = {name: self.param(name, keyed(initialiser(name), key), shape)
                        for key, (name, shape) in zip(split_keys(self.init_key, len(shapes)), shapes.items())}

    def graph(self, items, baskets, lengths, n_baskets) -> BasketGraph:
        return cooccurrence_graph(items, baskets, lengths, n_baskets, self.n_items, min(items.shape[1], self.max_steps))

    def node_vectors(self, graph: BasketGraph) -> jax.Array:
        """v_i [b, V, d]: GCN layers, causal attention over time, temporal aggregation."""
        p = self.tensors
        hidden = p["item_embedding"][graph.node_items]  # [b, V, d], static over t
        for layer in range(self.n_layers):
            hidden = self.gcn(graph, hidden, p[f"gcn_{layer}"], p[f"gcn_{layer}_b"])
            hidden = jax.nn.relu(self.normalise(graph, hidden, layer))
        hidden = self.attention(hidden)
        weight = dense(hidden, p["temporal"]) * graph.step_mask[:, None, :, None]
        return jnp.sum(weight * hidden, axis=2)

    def gcn(self, graph: BasketGraph, hidden, w, bias) -> jax.Array:
        """(A_t H_t) W + b for every step: [b, V, d] (static) or [b, V, T, d] in, [b, V, T, d] out.

        Neighbour messages: per example one [W, W] x [W, d] product over same-basket occurrence
        pairs, then a segment sum of each occurrence's message into its (node, step)."""
        b, n_nodes = graph.node_items.shape
        n_steps = graph.self_weight.shape[1]
        rows = jnp.arange(b)[:, None]
        if hidden.ndim == 3:
            at_occurrence = hidden[rows, graph.alias]
            own = hidden[:, :, None, :] * graph.self_weight[:, None, :, None]
        else:
            at_occurrence = hidden[rows, graph.alias, graph.step]
            own = hidden * graph.self_weight[:, None, :, None]
        messages = jnp.einsum("bop,bpd->bod", graph.pair_weight, at_occurrence)
        segments = (rows * n_nodes + graph.alias) * n_steps + graph.step
        neighbours = jax.ops.segment_sum(messages.reshape(-1, messages.shape[-1]), segments.reshape(-1), b * n_nodes * n_steps)
        return dense(neighbours.reshape(b, n_nodes, n_steps, -1) + own, w) + bias

    def normalise(self, graph: BasketGraph, hidden, layer: int) -> jax.Array:
        """LayerNorm per (node, step), or the original's BatchNorm with batch statistics."""
        if self.norm == "layer":
            mean = jnp.mean(hidden, axis=-1, keepdims=True)
            variance = jnp.mean(jnp.square(hidden - mean), axis=-1, keepdims=True)
        else:
            steps = jnp.arange(hidden.shape[2]) < jnp.max(jnp.sum(graph.step_mask, axis=1))
            mask = (graph.node_mask[:, :, None] & steps[None, None, :])[..., None].astype(hidden.dtype)
            count = jnp.maximum(jnp.sum(mask), 1.0)
            mean = jnp.sum(mask * hidden, axis=(0, 1, 2), keepdims=True) / count
            variance = jnp.sum(mask * jnp.square(hidden - mean), axis=(0, 1, 2), keepdims=True) / count
        p = self.tensors
        return (hidden - mean) / jnp.sqrt(variance + self.norm_eps) * p[f"norm_{layer}_scale"] + p[f"norm_{layer}_bias"]

    def attention(self, hidden) -> jax.Array:
        """Causal multi-head self-attention over time per node, heads concatenated, no output projection."""
        p = self.tensors
        b, n_nodes, n_steps, d = hidden.shape
        head_dim = d // self.n_heads
        q, k, v = (dense(hidden, p[name]).reshape(b, n_nodes, n_steps, self.n_heads, head_dim) for name in ("query", "key", "value"))
        logits = jnp.einsum("bnthe,bnshe->bnhts", q, k) / jnp.sqrt(float(head_dim))
        causal = jnp.tril(jnp.ones((n_steps, n_steps), dtype=bool))
        attention = jax.nn.softmax(jnp.where(causal, logits, jnp.finfo(logits.dtype).min), axis=-1)
        return jnp.einsum("bnhts,bnshe->bnthe", attention, v).reshape(b, n_nodes, n_steps, d)

    def gated(self, graph: BasketGraph, node_vectors) -> jax.Array:
        """e_i of the history nodes [b, V, d] (global gated update)."""
        p = self.tensors
        alpha = p["alpha"][graph.node_items]
        return (1.0 - alpha) * p["item_embedding"][graph.node_items] + alpha * node_vectors

    def __call__(self, items, baskets, lengths, n_baskets) -> jax.Array:
        """Scores [b, n_items]: E_i . w_o + b_o for every item, the history nodes' e_i in place of E_i."""
        p = self.tensors
        graph = self.graph(items, baskets, lengths, n_baskets)
        base = dense(p["item_embedding"][: self.n_items], p["output"])[:, 0] + p["output_b"]
        node_embedding = p["item_embedding"][graph.node_items]
        change = dense(self.gated(graph, self.node_vectors(graph)) - node_embedding, p["output"])[..., 0]
        rows = jnp.arange(items.shape[0])[:, None]
        update = jnp.zeros((items.shape[0], self.n_items + 1)).at[rows, graph.node_items].add(change * graph.node_mask)
        return base[None, :] + update[:, : self.n_items]

    def representation(self, items, baskets, lengths, n_baskets) -> jax.Array:
        """The original's `get_basket_embedding` [b, d]: sum over history nodes of f_i / max f * e_i,
        divided by the number of nodes (f_i: baskets holding item i)."""
        graph = self.graph(items, baskets, lengths, n_baskets)
        frequency = jnp.sum(graph.membership, axis=1)  # [b, V]
        weight = frequency / jnp.maximum(jnp.max(frequency, axis=1, keepdims=True), 1.0)
        total = jnp.sum(weight[..., None] * self.gated(graph, self.node_vectors(graph)), axis=1)
        return total / jnp.maximum(jnp.sum(graph.node_mask, axis=1), 1)[:, None]


@register
@dataclasses.dataclass(frozen=True)
class DNNTSP(BasketModel):
    name: ClassVar[str] = "DNNTSP"

    embedding_size: int = 32
    n_layers: int = 2
    n_heads: int = 4
    norm: str = "layer"  # "layer" (per-example losses) or "batch" (the original's, batch statistics)

    def __post_init__(self):
        if self.norm not in ("layer", "batch"):
            raise ValueError(f"DNNTSP.norm must be 'layer' or 'batch', got {self.norm!r}")
        if self.embedding_size % self.n_heads:
            raise ValueError(f"DNNTSP.embedding_size {self.embedding_size} is not a multiple of n_heads {self.n_heads}")

    def network(self, context: BasketShape, init_key: jax.Array | None = None, n_steps: int | None = None) -> DNNTSPNetwork:
        """The module; `n_steps` bounds the time steps below max_history_baskets (parameters unchanged)."""
        steps = context.max_history_baskets if n_steps is None else min(n_steps, context.max_history_baskets)
        return DNNTSPNetwork(context.n_items, self.embedding_size, self.n_layers, self.n_heads, self.norm, steps,
                             init_key=init_key)

    def init(self, key: jax.Array, context: BasketShape):
        """{"params": {...}}, created from the shapes of a one-occurrence batch (no forward run)."""
        one = jax.ShapeDtypeStruct((1, 1), jnp.int32)
        row = jax.ShapeDtypeStruct((1,), jnp.int32)
        return self.network(context, key).lazy_init(key, one, one, row, row)

    @staticmethod
    def _inputs(query: dict[str, jax.Array]):
        return query["items"], query["baskets"], query["lengths"], query["n_baskets"]

    def logits(self, params, context, query: dict[str, jax.Array], key: jax.Array | None = None,
               n_steps: int | None = None) -> jax.Array:
        del key  # no dropout
        return self.network(context, n_steps=n_steps).apply(params, *self._inputs(query))

    def representation(self, params, context, batch: dict[str, jax.Array], key=None) -> jax.Array:
        return self.network(context).apply(params, *self._inputs(batch), method="representation")
