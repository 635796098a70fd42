"""SR-GNN: a gated graph network over the session graph, soft attention for the session vector.

Wu et al., "Session-based Recommendation with Graph Neural Networks", AAAI 2019 (eqs. 1-7), in
RecBole 1.2.1's form (`SRGNN`), as the original benchmark trains it (spec 2.2):

    a_in  = A_in (H W_in + b_in) + b_iah,  a_out = A_out (H W_out + b_out) + b_ioh   (eq. 1)
    H'    = GRU-cell([a_in; a_out], H)                    gates r, z, n as torch (eqs. 2-5)
    alpha_j = q^T sigmoid(W_1 h_T + W_2 h_j + c)          over the valid positions j (eq. 6)
    s_g   = sum_j alpha_j h_j,  s = W_3 [s_g; h_T] + b_3  h_T: the last item's node (eq. 7)
    score(i) = <s, E[i]>                                  every item, CE over all items

Embedding 100, one propagation step, every parameter U(+-1/sqrt(100)), weight decay 1e-5 and
the lr x 0.1 every 3 epochs (both in the run configuration), no dropout.

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.models.base import register
from erase_jax.models.layers import dense, keyed, last_position, split_keys, uniform
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


# Parameter shapes in the order of their keys (split(init_key, 18)); h = embedding size.
def parameter_shapes(n_items: int, h: int) -> dict[str, tuple[int, ...]]:
    return {
        "item_embedding": (n_items + 1, h),  # row n_items = padding
        "w_ih": (2 * h, 3 * h), "w_hh": (h, 3 * h), "b_ih": (3 * h,), "b_hh": (3 * h,),
        "b_iah": (h,), "b_ioh": (h,),
        "edge_in": (h, h), "edge_in_b": (h,), "edge_out": (h, h), "edge_out_b": (h,),
        "linear_one": (h, h), "linear_one_b": (h,), "linear_two": (h, h), "linear_two_b": (h,),
        "linear_three": (h, 1), "linear_transform": (2 * h, h), "linear_transform_b": (h,),
    }


class SRGNNNetwork(nn.Module):
    """The SR-GNN network (module docstring); call on (items [n, L], lengths [n], dropout_key)."""

    n_items: int
    embedding_size: int
    step: int
    init_key: jax.Array | None = None  # draws the parameters, in `parameter_shapes`' order

    def setup(self):
        shapes = parameter_shapes(self.n_items, self.embedding_size)
        init = uniform(1.0 / np.sqrt(self.embedding_size))
        self.tensors = {name: self.param(name, keyed(init, key), shape)  # name -> parameter
                  for key, (name, shape) in zip(split_keys(self.init_key, len(shapes)), shapes.items())}

    def __call__(self, items: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        del dropout_key  # SR-GNN has no dropout
        p = self.tensors
        node_items, alias, incoming, outgoing = session_graph(items, lengths, self.n_items)
        hidden = p["item_embedding"][node_items]
        for _ in range(self.step):
            hidden = self.gnn_cell(incoming, outgoing, hidden)
        sequence_hidden = jnp.take_along_axis(hidden, alias[..., None], axis=1)
        last = last_position(sequence_hidden, lengths)
        q1 = (last @ p["linear_one"] + p["linear_one_b"])[:, None, :]
        q2 = dense(sequence_hidden, p["linear_two"]) + p["linear_two_b"]
        alpha = dense(jax.nn.sigmoid(q1 + q2), p["linear_three"])
        valid = (jnp.arange(items.shape[1])[None, :] < lengths[:, None])[..., None]
        session = jnp.sum(alpha * sequence_hidden * valid, axis=1)
        return jnp.concatenate([session, last], axis=-1) @ p["linear_transform"] + p["linear_transform_b"]

    def gnn_cell(self, incoming: jax.Array, outgoing: jax.Array, hidden: jax.Array) -> jax.Array:
        """One gated propagation step (paper eqs. 1-5; RecBole `GNN.GNNCell`) of node states
        `hidden` [n, L, h] over the normalised adjacencies [n, L, L].

        RecBole concatenates [incoming messages; outgoing messages] and projects all three
        gates at once; here each gate has its own products with the matching blocks of
        `w_ih` / `w_hh` (the same sums), which spares the backward pass the concatenated
        [nodes, 3h] gradients and their transposes.
        """
        p = self.tensors
        h = hidden.shape[-1]
        input_in = incoming @ (dense(hidden, p["edge_in"]) + p["edge_in_b"]) + p["b_iah"]
        input_out = outgoing @ (dense(hidden, p["edge_out"]) + p["edge_out_b"]) + p["b_ioh"]

        def gate(index):
            cols = slice(index * h, (index + 1) * h)
            from_input = dense(input_in, p["w_ih"][:h, cols]) + dense(input_out, p["w_ih"][h:, cols]) + p["b_ih"][cols]
            return from_input, dense(hidden, p["w_hh"][:, cols]) + p["b_hh"][cols]

        (i_r, h_r), (i_z, h_z), (i_n, h_n) = gate(0), gate(1), gate(2)
        reset = jax.nn.sigmoid(i_r + h_r)
        update = jax.nn.sigmoid(i_z + h_z)
        candidate = jnp.tanh(i_n + reset * h_n)
        return hidden + update * (candidate - hidden)  # (1 - z) h + z h~ (eq. 5, RecBole's order)


@register
@dataclasses.dataclass(frozen=True)
class SRGNN(SequenceModel):
    name: ClassVar[str] = "SRGNN"
    influence_targets: ClassVar[tuple] = (  # the original's SCIF target_params
        ("params", "item_embedding"), ("params", "linear_transform"), ("params", "linear_transform_b"))

    embedding_size: int = 100
    step: int = 1

    def network(self, context: SequenceShape, init_key: jax.Array | None = None) -> SRGNNNetwork:
        return SRGNNNetwork(context.n_items, self.embedding_size, self.step, init_key)
