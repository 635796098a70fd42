"""SR-GNN: a gated graph network over the session graph, soft attention for the session vector.

Wu et al., "Session-based Recommendation with Graph Neural Networks", AAAI 2019 (eqs. 1-7), in
RecBole 1.2.1's form (`SRGNN`), as the original benchmark trains it (spec 2.2): embedding 100,
one propagation step, every parameter U(+-1/sqrt(100)), weight decay 1e-5 and the lr x 0.1
every 3 epochs (both in the run configuration), CE over all items.

Session graph (RecBole `_get_slice`): the nodes are the session's distinct items; a directed
edge u -> v (weight 1, however often it occurs) for every consecutive pair; the incoming
matrix row-normalises by in-degree, the outgoing one by out-degree. Graphs are built on
device as dense per-row matrices over at most `width` (<= 50) nodes rather than batched with
jraph: a [50, 50] adjacency per session is tiny, batched dense matmuls are faster on CPU
than segment-sum scatters, and the shapes stay fixed per length bucket. Nodes are numbered
by first occurrence (RecBole sorts them by item id); the model is permutation-equivariant
in the nodes, so the result is the same.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.models.base import register
from erase_jax.models.layers import dense, last_position, uniform
from erase_jax.models.sbr.base import SequenceModel, SequenceShape


def session_graph(items: jax.Array, lengths: jax.Array, pad: int):
    """Dense session graphs of a batch of left-aligned, padded sequences.

    Returns node_items [n, L] (padding id `pad` past the last node), alias [n, L] (the node
    of each position), incoming [n, L, L] with incoming[i, j] = A[j, i] / indeg(i), and
    outgoing [n, L, L] with outgoing[i, j] = A[i, j] / outdeg(i) (degrees of 0 count as 1),
    where A[u, v] = 1 if some consecutive pair goes u -> v.
    """
    n, width = items.shape
    positions = jnp.arange(width)
    valid = positions[None, :] < lengths[:, None]
    same = (items[:, :, None] == items[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    first = jnp.where(valid, jnp.argmax(same, axis=1), positions[None, :])  # first position holding the item
    is_node = valid & (first == positions[None, :])
    node_rank = jnp.cumsum(is_node, axis=1) - 1
    alias = jnp.take_along_axis(node_rank, first, axis=1)
    node_items = jnp.full((n, width), pad, items.dtype)
    node_items = node_items.at[jnp.arange(n)[:, None], jnp.where(is_node, alias, width)].set(items, mode="drop")
    one_hot = jax.nn.one_hot(alias, width) * valid[..., None]  # [n, position, node]
    follows = one_hot[:, 1:] * valid[:, 1:, None]
    adjacency = jnp.minimum(jnp.einsum("npu,npv->nuv", one_hot[:, :-1], follows), 1.0)
    indegree = jnp.maximum(adjacency.sum(axis=1), 1.0)
    outdegree = jnp.maximum(adjacency.sum(axis=2), 1.0)
    incoming = jnp.swapaxes(adjacency, 1, 2) / indegree[:, :, None]
    outgoing = adjacency / outdegree[:, :, None]
    return node_items, alias, incoming, outgoing


@register
@dataclasses.dataclass(frozen=True)
class SRGNN(SequenceModel):
    name: ClassVar[str] = "SRGNN"
    influence_targets: ClassVar[tuple] = (("item_embedding",), ("linear_transform",), ("linear_transform_b",))  # the original's SCIF target_params

    embedding_size: int = 100
    step: int = 1

    def init(self, key: jax.Array, context: SequenceShape):
        h = self.embedding_size
        bound = 1.0 / np.sqrt(h)
        shapes = {
            "item_embedding": (context.n_items + 1, h),
            "w_ih": (2 * h, 3 * h), "w_hh": (h, 3 * h), "b_ih": (3 * h,), "b_hh": (3 * h,),
            "b_iah": (h,), "b_ioh": (h,),
            "edge_in": (h, h), "edge_in_b": (h,), "edge_out": (h, h), "edge_out_b": (h,),
            "linear_one": (h, h), "linear_one_b": (h,), "linear_two": (h, h), "linear_two_b": (h,),
            "linear_three": (h, 1), "linear_transform": (2 * h, h), "linear_transform_b": (h,),
        }
        keys = jax.random.split(key, len(shapes))
        return {name: uniform(k, shape, bound) for k, (name, shape) in zip(keys, shapes.items())}

    def represent(self, params, context, items, lengths, key):
        del key  # SR-GNN has no dropout
        node_items, alias, incoming, outgoing = session_graph(items, lengths, context.n_items)
        hidden = params["item_embedding"][node_items]
        for _ in range(self.step):
            hidden = self._gnn_cell(params, incoming, outgoing, hidden)
        sequence_hidden = jnp.take_along_axis(hidden, alias[..., None], axis=1)
        last = last_position(sequence_hidden, lengths)
        q1 = (last @ params["linear_one"] + params["linear_one_b"])[:, None, :]
        q2 = dense(sequence_hidden, params["linear_two"]) + params["linear_two_b"]
        alpha = dense(jax.nn.sigmoid(q1 + q2), params["linear_three"])
        valid = (jnp.arange(items.shape[1])[None, :] < lengths[:, None])[..., None]
        session = jnp.sum(alpha * sequence_hidden * valid, axis=1)
        return jnp.concatenate([session, last], axis=-1) @ params["linear_transform"] + params["linear_transform_b"]

    def output_items(self, params):
        return params["item_embedding"][:-1]

    @staticmethod
    def _gnn_cell(params, incoming, outgoing, hidden):
        """One gated propagation step (paper eqs. 1-5; RecBole `GNN.GNNCell`).

        RecBole concatenates [incoming messages; outgoing messages] and projects all three
        gates at once; here each gate has its own products with the matching blocks of
        `w_ih` / `w_hh` (the same sums), which spares the backward pass the concatenated
        [nodes, 3h] gradients and their transposes (about 10 % of a CPU step).
        """
        h = hidden.shape[-1]
        input_in = incoming @ (dense(hidden, params["edge_in"]) + params["edge_in_b"]) + params["b_iah"]
        input_out = outgoing @ (dense(hidden, params["edge_out"]) + params["edge_out_b"]) + params["b_ioh"]

        def gate(index):
            cols = slice(index * h, (index + 1) * h)
            from_input = dense(input_in, params["w_ih"][:h, cols]) + dense(input_out, params["w_ih"][h:, cols]) + params["b_ih"][cols]
            return from_input, dense(hidden, params["w_hh"][:, cols]) + params["b_hh"][cols]

        (i_r, h_r), (i_z, h_z), (i_n, h_n) = gate(0), gate(1), gate(2)
        reset = jax.nn.sigmoid(i_r + h_r)
        update = jax.nn.sigmoid(i_z + h_z)
        candidate = jnp.tanh(i_n + reset * h_n)
        return hidden + update * (candidate - hidden)  # (1 - z) h + z h~ (eq. 5, RecBole's order)
