"""SASRec: a causal Transformer encoder over the session; the last position scores the next item.

Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018, in RecBole 1.2.1's
form (`SASRec`, `TransformerEncoder`), as the original benchmark trains it (spec 2.2):

    x^0_t = dropout(LN(E[x_t] + P_t))                           learned positions P
    a     = dropout(MultiHead(x^l, x^l, x^l; causal, padding))   per layer l (eq. 2-4)
    y     = LN(dropout(a W_O + b_O) + x^l)                       post-LN residual
    x^l+1 = LN(dropout(GELU(y W_1 + b_1) W_2 + b_2) + y)         point-wise feed-forward (eq. 5)
    score(i) = <x^L_T, E[i]>                                     at the last item T, CE over all items

with MultiHead(q, k, v) = concat_h softmax(q W_Q^h (k W_K^h)^T / sqrt(d_h) + mask) v W_V^h and
dropout also on the attention weights. Hidden 32, 2 layers of 2 heads, a 128-wide exact-GELU
feed-forward, layer-norm eps 1e-12, dropout 0.5 on hidden states and attention weights,
normal(0, 0.02) weights, zero biases, unit layer-norm scales. The training objective is
RecBole's (last position only) by default; `sequence.objective: all_positions` trains the
paper's every-position loss (eq. 7) on chunks of the sequence (`erase_jax.data.positions`).

Masking: position i attends to position j only if j <= i (causal) and j holds an item
(padding), with RecBole's additive -10000, so no position sees the future or padding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from itertools import repeat
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from erase_jax.models.base import register
from erase_jax.models.layers import LayerNorm, dense, dropout, keyed, last_position, normal, split_keys
from erase_jax.models.sbr.base import SequenceModel, SequenceShape


class TransformerLayer(nn.Module):
    """One post-LN Transformer layer (module docstring): self-attention, then the feed-forward."""

    hidden_size: int
    inner_size: int
    n_heads: int
    hidden_dropout: float
    attention_dropout: float
    layer_norm_eps: float
    initializer_range: float
    init_keys: tuple = (None,) * 6  # the keys of query, key, value, attention_out, ffn_in, ffn_out

    def setup(self):
        h, inner = self.hidden_size, self.inner_size
        weight = lambda name, key, shape: self.param(name, keyed(normal(self.initializer_range), key), shape)
        bias = lambda name, size: self.param(name, nn.initializers.zeros, (size,))
        keys = self.init_keys
        self.w_query, self.b_query = weight("query", keys[0], (h, h)), bias("query_b", h)
        self.w_key, self.b_key = weight("key", keys[1], (h, h)), bias("key_b", h)
        self.w_value, self.b_value = weight("value", keys[2], (h, h)), bias("value_b", h)
        self.w_attention_out, self.b_attention_out = weight("attention_out", keys[3], (h, h)), bias("attention_out_b", h)
        self.attention_norm = LayerNorm(h, self.layer_norm_eps)
        self.w_ffn_in, self.b_ffn_in = weight("ffn_in", keys[4], (h, inner)), bias("ffn_in_b", inner)
        self.w_ffn_out, self.b_ffn_out = weight("ffn_out", keys[5], (inner, h)), bias("ffn_out_b", h)
        self.ffn_norm = LayerNorm(h, self.layer_norm_eps)

    def __call__(self, x, context, query_positions, is_item, dropout_keys: Iterator):
        """Queries from `x` [n, Lq, h] at `query_positions` [n, Lq], keys/values from `context`
        [n, L, h] whose positions hold items where `is_item` [n, L]; the next three of
        `dropout_keys` (keys or Nones) drop the attention weights, the attention output and the
        feed-forward output. A query sees key j only if j <= its position and j holds an item;
        the others get RecBole's additive -10000 (built inside the fused softmax, never as an
        [n, L, L] array)."""
        n, n_queries, h = x.shape
        head = h // self.n_heads
        split = lambda t: t.reshape(n, t.shape[1], self.n_heads, head).transpose(0, 2, 1, 3)
        q = split(dense(x, self.w_query) + self.b_query)
        k = split(dense(context, self.w_key) + self.b_key)
        v = split(dense(context, self.w_value) + self.b_value)
        allowed = (query_positions[:, :, None] >= jnp.arange(context.shape[1])[None, None, :]) & is_item[:, None, :]
        additive_mask = jnp.where(allowed, 0.0, -10000.0)[:, None]  # [n, 1, Lq, L]
        weights = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(head) + additive_mask, axis=-1)
        weights = dropout(weights, self.attention_dropout, next(dropout_keys))
        attended = (weights @ v).transpose(0, 2, 1, 3).reshape(n, n_queries, h)
        attended = dropout(dense(attended, self.w_attention_out) + self.b_attention_out, self.hidden_dropout, next(dropout_keys))
        x = self.attention_norm(attended + x)
        inner = _gelu(dense(x, self.w_ffn_in) + self.b_ffn_in)
        out = dropout(dense(inner, self.w_ffn_out) + self.b_ffn_out, self.hidden_dropout, next(dropout_keys))
        return self.ffn_norm(out + x)


class SASRecNetwork(nn.Module):
    """The SASRec network (module docstring); call on (items [n, L], lengths [n], dropout_key)."""

    n_items: int
    max_length: int
    hidden_size: int
    inner_size: int
    n_layers: int
    n_heads: int
    hidden_dropout: float
    attention_dropout: float
    layer_norm_eps: float
    initializer_range: float
    init_key: jax.Array | None = None  # draws the parameters: the layers' weights in order, then E, P

    def setup(self):
        h = self.hidden_size
        keys = split_keys(self.init_key, 2 + 6 * self.n_layers)
        self.layers = [
            TransformerLayer(h, self.inner_size, self.n_heads, self.hidden_dropout, self.attention_dropout,
                             self.layer_norm_eps, self.initializer_range, tuple(keys[6 * i: 6 * i + 6]))
            for i in range(self.n_layers)
        ]
        init = normal(self.initializer_range)
        self.item_embedding = self.param("item_embedding", keyed(init, keys[-2]), (self.n_items + 1, h))  # row n_items = padding
        self.position_embedding = self.param("position_embedding", keyed(init, keys[-1]), (self.max_length, h))
        self.input_norm = LayerNorm(h, self.layer_norm_eps)

    def __call__(self, items: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        return self.encode(items, lengths, dropout_key, last_only=True)

    def encode(self, items, lengths, dropout_key, last_only: bool = False):
        """Hidden states at every position, [n, L, hidden]; with `last_only`, [n, hidden] at
        position length - 1.

        The loss and the scores read only that position, so `last_only` runs the final layer
        for that one query (its keys and values still come from every position): the same
        numbers as RecBole's all-positions pass followed by a gather, with one query instead of
        L in the final layer's attention and feed-forward.
        """
        n, width = items.shape
        # split(dropout_key, 1 + 3 * n_layers), taken in order: the input's, then three per layer
        keys = iter(jax.random.split(dropout_key, 1 + 3 * self.n_layers)) if dropout_key is not None else repeat(None)
        x = self.item_embedding[items] + self.position_embedding[:width][None]
        x = dropout(self.input_norm(x), self.hidden_dropout, next(keys))
        positions = jnp.arange(width)
        is_item = positions[None, :] < lengths[:, None]  # [n, key]
        every_query = jnp.broadcast_to(positions, (n, width))  # [n, query]
        *first_layers, final_layer = self.layers
        for layer in first_layers:
            x = layer(x, x, every_query, is_item, keys)
        if not last_only:
            return final_layer(x, x, every_query, is_item, keys)
        last_query = last_position(x, lengths)[:, None, :]
        return final_layer(last_query, x, (lengths - 1)[:, None], is_item, keys)[:, 0]


@register
@dataclasses.dataclass(frozen=True)
class SASRec(SequenceModel):
    name: ClassVar[str] = "SASRec"
    causal: ClassVar[bool] = True  # `represent_positions`: every prefix in one pass
    influence_targets: ClassVar[tuple] = (("params", "item_embedding"),)  # the original's SCIF target_params

    hidden_size: int = 32
    inner_size: int = 128
    n_layers: int = 2
    n_heads: int = 2
    hidden_dropout: float = 0.5
    attention_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def network(self, context: SequenceShape, init_key: jax.Array | None = None) -> SASRecNetwork:
        return SASRecNetwork(context.n_items, context.max_length, self.hidden_size, self.inner_size, self.n_layers,
                             self.n_heads, self.hidden_dropout, self.attention_dropout, self.layer_norm_eps,
                             self.initializer_range, init_key)

    def encode(self, params, context: SequenceShape, items, lengths, key, last_only: bool = False):
        """`SASRecNetwork.encode`: hidden states at every position [n, L, hidden] (or the last)."""
        return self.network(context).apply(params, items, lengths, key, last_only, method=SASRecNetwork.encode)

    def represent_positions(self, params, context: SequenceShape, items, lengths, key):
        return self.encode(params, context, items, lengths, key)


def _gelu(x: jax.Array) -> jax.Array:
    """Exact GELU, x * Phi(x), written with erf as RecBole does (`jax.nn.gelu` goes through erfc,
    which costs more on CPU); the same function to float32 rounding."""
    return x * 0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))
