"""Sets2Sets: an attentive GRU encoder-decoder over the history baskets plus a repeat term.

Hu and He, "Sets2Sets: Learning from Sequential Sets with Neural Networks", KDD 2019, in the
form of ERASE's RecBole port (`sets2sets.py`, next-basket spec 2.2), for a history of m baskets
B_1..B_m (oldest first) and items 0..N-1 (N = n_items; row N of both tables is the padding):

    e_t = sum_{i in B_t} E_enc[i]                      basket vector: a SUM of encoder rows
    s_t = GRU_enc(e_t, s_{t-1}),  s_0 = 0              1 layer, hidden 32; h_enc = s_m
    x   = dropout(sum_{i in B_m} E_dec[i])             decoder input: the last basket, decoder table
    a   = softmax_{t <= m}(W_a [x; h_enc] + b_a)       location attention, one score per slot t
    c   = sum_t a_t s_t
    o   = ReLU(W_o [x; c] + b_o)
    z   = W_z GRU_dec(o, h_enc) + b_z                  one decoder step from h_enc; [N]
    f_i = (occurrences of i in B_1..B_m) / m           history term (duplicates count, spec 5.19)
    v   = sigmoid(W_f f + b_f),  r = 1[f > 0]          W_f a full N x N matrix
    logits = z * (1 - r * v) + f * v,   p = softmax(logits)

`logits` returns the pre-softmax logits: ranking by p and by the logits is the same, and the
probabilities (Fanchuan's KL, the spam target probabilities) take ONE softmax of them (the
original's `full_sort_predict` returns p and those consumers apply a second softmax; spec 5.7).

Loss per row (labels y = the target basket's multi-hot vector):

    sum_i w_i (p_i - y_i)^2  +  lambda * mean_{i in P, j not in P} exp(-(p_i - p_j))

w_i = max_j cnt_j / cnt_i, cnt = occurrences over the training histories (`prepare`; w = 0 for
items absent from them); the set term's pair mean is computed in O(N) (`set_loss`). Both are
weighted-meaned over rows. `compat="correct"` (default) differentiates the set term (the
paper's intent); `compat="erase"` detaches p inside it as the original does, so only the
weighted MSE trains (spec 5.5).

Details: attention slots >= m are masked (the port masks; RC's original does not); the
attention layer has `max_history_baskets` outputs (the original's buffer has 100 slots for at
most 98 baskets; with the mask the spare slots never matter). Init as spec 2: embeddings
N(0, 0.02) (padding rows 0), Linear and GRU weights Xavier-uniform, biases 0; GRU gates in
torch's order. Cost: W_f has N^2 parameters (Ta-Feng, N = 11,997: 144M, 576 MB in float32,
three times that with Adam's moments). The forward reads only the history's rows of W_f
(`history_product`: b W N work for W occurrences per row, not a [b, N] x [N, N] product), but
every Adam step still updates all N^2 entries. The option `history_gate="diagonal"` (not the
original) replaces W_f by v = sigmoid(a * f + b), a, b in R^N (init 0).

`history_optimizer="lazy_adam"` (not the original; default "adam") trains W_f with a lazy,
row-sparse Adam (`erase_jax.lazy_adam`): a step's gradient of W_f is zero outside the rows of the
batch's history items (the forward reads only those rows), so the step gathers those rows into a
slab (`row_sparse_rows`: the batch's distinct history items, padded to a static budget K =
min(N, rows per batch x the most distinct items of a training history)), differentiates the loss
with respect to the slab instead of W_f, and updates only those rows' weights and moments; every
other parameter takes dense Adam. It differs from dense Adam in that untouched rows' moments do
not decay and those rows do not move (`erase_jax.lazy_adam`). Only training steps are lazy: the
unlearning methods and evaluation see the full W_f.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.baskets import BasketRows, multi_hot
from erase_jax.models.base import register
from erase_jax.models.layers import dropout, gru_time_major, keyed, normal, split_keys, xavier_uniform
from erase_jax.models.nbr.base import BasketModel, weighted_mean

HISTORY_GATES = ("full", "diagonal")
HISTORY_OPTIMIZERS = ("adam", "lazy_adam")
HISTORY_PATH = ("params", "history_w")
COMPAT_MODES = ("correct", "erase")


@struct.dataclass
class Sets2SetsContext:
    """item_weights: float32 [n_items], the loss weights max_j cnt_j / cnt_i (0 where cnt_i = 0).
    max_history_items: the most distinct items of one training history (the lazy step's budget).
    history_rows: None, or the sorted W_f rows [K] whose slab stands in the params for W_f (a
    lazy training step; padding rows >= n_items at the end)."""

    item_weights: jax.Array
    n_items: int = struct.field(pytree_node=False)
    max_history_baskets: int = struct.field(pytree_node=False)
    max_history_items: int = struct.field(pytree_node=False, default=0)
    history_rows: jax.Array | None = None


def training_item_weights(train: BasketRows) -> np.ndarray:
    """max_j cnt_j / cnt_i over the occurrences of the training histories, 0 for unseen items."""
    valid = np.arange(train.items.shape[1])[None, :] < train.lengths[:, None]
    counts = np.bincount(train.items[valid], minlength=train.n_items)[: train.n_items].astype(np.float64)
    weights = np.where(counts > 0, counts.max(initial=0.0) / np.maximum(counts, 1.0), 0.0)
    return weights.astype(np.float32)


def max_history_items(train: BasketRows) -> int:
    """The most distinct items in one training history (0 without rows)."""
    valid = np.arange(train.items.shape[1])[None, :] < train.lengths[:, None]
    padded = np.where(valid, train.items, -1)
    distinct = [len(np.unique(row[row >= 0])) for row in padded]
    return max(distinct, default=0)


def set_loss(p: jax.Array, y: jax.Array) -> jax.Array:
    """Per row, the mean over (positive i, negative j) pairs of exp(-(p_i - p_j)); 0 without pairs.

    exp(-(p_i - p_j)) = exp(-p_i) exp(p_j), so the sum over pairs factorises:
    mean = (sum_{i in P} exp(-p_i)) (sum_{j not in P} exp(p_j)) / (|P| (N - |P|)), O(N) per row.
    """
    n_positive = jnp.sum(y, axis=-1)
    n_negative = y.shape[-1] - n_positive
    positive = jnp.sum(y * jnp.exp(-p), axis=-1)
    negative = jnp.sum((1.0 - y) * jnp.exp(p), axis=-1)
    return positive * negative / jnp.maximum(n_positive * n_negative, 1.0)


def gru_step(w_ih, w_hh, b_ih, b_hh, x: jax.Array, hidden: jax.Array) -> jax.Array:
    """One torch GRU step (gates r, z, n) from the state `hidden`."""
    x_r, x_z, x_n = jnp.split(x @ w_ih + b_ih, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hidden @ w_hh + b_hh, 3, axis=-1)
    reset = jax.nn.sigmoid(x_r + h_r)
    update = jax.nn.sigmoid(x_z + h_z)
    candidate = jnp.tanh(x_n + reset * h_n)
    return (1.0 - update) * candidate + update * hidden


def _embedding_init(n_items: int):
    """N(0, 0.02) with the padding row n_items set to 0."""
    return lambda key, shape: normal(0.02)(key, shape).at[n_items].set(0.0)


class Sets2SetsNetwork(nn.Module):
    """The Sets2Sets network (module docstring); call on a basket query's arrays and a dropout key."""

    n_items: int
    max_history_baskets: int
    embedding_size: int
    hidden_size: int
    dropout_prob: float
    history_gate: str
    init_key: jax.Array | None = None  # tensor i from split(init_key, 10)[i] (biases: 0)
    history_slab_rows: int | None = None  # K: history_w is the slab of K rows (a lazy step)

    def setup(self):
        n, d, h, slots = self.n_items, self.embedding_size, self.hidden_size, self.max_history_baskets
        keys = split_keys(self.init_key, 10)
        zeros = nn.initializers.zeros
        self.encoder_embedding = self.param("encoder_embedding", keyed(_embedding_init(n), keys[0]), (n + 1, d))
        self.decoder_embedding = self.param("decoder_embedding", keyed(_embedding_init(n), keys[1]), (n + 1, d))
        self.encoder_w_ih = self.param("encoder_w_ih", keyed(xavier_uniform, keys[2]), (d, 3 * h))
        self.encoder_w_hh = self.param("encoder_w_hh", keyed(xavier_uniform, keys[3]), (h, 3 * h))
        self.encoder_b_ih = self.param("encoder_b_ih", zeros, (3 * h,))
        self.encoder_b_hh = self.param("encoder_b_hh", zeros, (3 * h,))
        self.attention_w = self.param("attention_w", keyed(xavier_uniform, keys[4]), (d + h, slots))
        self.attention_b = self.param("attention_b", zeros, (slots,))
        self.combine_w = self.param("combine_w", keyed(xavier_uniform, keys[5]), (d + h, d))
        self.combine_b = self.param("combine_b", zeros, (d,))
        self.decoder_w_ih = self.param("decoder_w_ih", keyed(xavier_uniform, keys[6]), (d, 3 * h))
        self.decoder_w_hh = self.param("decoder_w_hh", keyed(xavier_uniform, keys[7]), (h, 3 * h))
        self.decoder_b_ih = self.param("decoder_b_ih", zeros, (3 * h,))
        self.decoder_b_hh = self.param("decoder_b_hh", zeros, (3 * h,))
        self.output_w = self.param("output_w", keyed(xavier_uniform, keys[8]), (h, n))
        self.output_b = self.param("output_b", zeros, (n,))
        if self.history_gate == "full":
            self.history_w = self.param("history_w", keyed(xavier_uniform, keys[9]), (self.history_slab_rows or n, n))
        else:
            self.history_w = self.param("history_w", zeros, (n,))
        self.history_b = self.param("history_b", zeros, (n,))

    def __call__(self, items, baskets, lengths, n_baskets, dropout_key: jax.Array | None, n_steps: int | None = None,
                 history_rows: jax.Array | None = None) -> jax.Array:
        b, width = items.shape
        n = self.n_items
        slots = min(width, self.max_history_baskets)  # a history of `width` occurrences has <= width baskets
        slots = slots if n_steps is None else min(slots, n_steps)
        rows = jnp.arange(b)[:, None]
        valid = (jnp.arange(width)[None, :] < lengths[:, None]) & (baskets < slots)
        safe_items = jnp.where(valid, items, n)
        # basket vectors [b, slots, d]: segment sums by basket position; padding goes to slot `slots`, dropped
        encoded = self.encoder_embedding[safe_items]
        basket_vectors = jnp.zeros((b, slots + 1, encoded.shape[-1]), encoded.dtype)
        basket_vectors = basket_vectors.at[rows, jnp.where(valid, baskets, slots)].add(encoded)[:, :slots]
        states = gru_time_major(self.encoder_w_ih, self.encoder_w_hh, self.encoder_b_ih, self.encoder_b_hh,
                                jnp.swapaxes(basket_vectors, 0, 1), self.hidden_size)
        states = jnp.swapaxes(states, 0, 1)  # [b, slots, h]
        last_state = jnp.take_along_axis(states, jnp.maximum(n_baskets - 1, 0)[:, None, None], axis=1)[:, 0]
        h_enc = jnp.where((n_baskets > 0)[:, None], last_state, 0.0)

        in_last = valid & (baskets == (n_baskets - 1)[:, None])
        x = jnp.sum(jnp.where(in_last[..., None], self.decoder_embedding[safe_items], 0.0), axis=1)
        x = dropout(x, self.dropout_prob, dropout_key)

        real_slot = jnp.arange(slots)[None, :] < n_baskets[:, None]
        scores = jnp.concatenate([x, h_enc], -1) @ self.attention_w[:, :slots] + self.attention_b[:slots]
        attention = jax.nn.softmax(jnp.where(real_slot, scores, -1e30), axis=-1) * real_slot
        context = jnp.einsum("bt,bth->bh", attention, states)
        o = jax.nn.relu(jnp.concatenate([x, context], -1) @ self.combine_w + self.combine_b)
        decoded = gru_step(self.decoder_w_ih, self.decoder_w_hh, self.decoder_b_ih, self.decoder_b_hh, o, h_enc)
        z = decoded @ self.output_w + self.output_b  # [b, n]

        counts = jnp.zeros((b, n + 1), z.dtype).at[rows, safe_items].add(1.0)[:, :n]
        per_basket = 1.0 / jnp.maximum(n_baskets, 1)[:, None].astype(z.dtype)
        f = counts * per_basket
        if self.history_gate == "full":  # f W_f = sum over the history's occurrences of W_f[item] / m
            # a lazy step: W_f's rows `history_rows` (sorted) as a slab; an item's row is its position
            rows_of = safe_items if history_rows is None else jnp.minimum(
                jnp.searchsorted(history_rows, safe_items), history_rows.shape[0] - 1)  # padding: weight 0
            gate = history_product(self.history_w, rows_of, valid * per_basket)
        else:
            gate = f * self.history_w
        v = jax.nn.sigmoid(gate + self.history_b)
        r = (f > 0).astype(z.dtype)
        return z * (1.0 - r * v) + f * v


HISTORY_CHUNK = 1 << 25  # floats of gathered W_f rows held at once (128 MB)


def history_product(w: jax.Array, items: jax.Array, weight: jax.Array) -> jax.Array:
    """f W_f [b, N] for f = sum_o weight[:, o] e_{items[:, o]}: a weighted sum of the history's W_f
    rows (padding items, id N, have weight 0), not a [b, N] x [N, N] product: W occurrences per
    row cost b W N instead of b N^2. Rows run in chunks whose gathered rows hold HISTORY_CHUNK
    floats at most."""
    b, width = items.shape
    n = w.shape[1]
    chunk = max(1, min(b, HISTORY_CHUNK // max(width * n, 1)))
    n_chunks = -(-b // chunk)
    pad = n_chunks * chunk - b
    items = jnp.pad(jnp.minimum(items, n - 1), ((0, pad), (0, 0))).reshape(n_chunks, chunk, width)
    weight = jnp.pad(weight, ((0, pad), (0, 0))).reshape(n_chunks, chunk, width)
    out = jax.lax.map(lambda part: jnp.einsum("co,con->cn", part[1], w[part[0]]), (items, weight))
    return out.reshape(n_chunks * chunk, n)[:b]


@register
@dataclasses.dataclass(frozen=True)
class Sets2Sets(BasketModel):
    """Sets2Sets (module docstring). lambda_set: the set-loss weight (SETS2SETS_SET_LOSS_WEIGHT).
    history_gate: "full" (the original's N x N layer) or "diagonal" (a cheaper per-item gate).
    compat: "correct" (differentiable set term) or "erase" (detached, as the original; spec 5.5).
    history_optimizer: "adam" (dense, as the original) or "lazy_adam" (row-sparse W_f updates in
    training, module docstring; needs history_gate "full")."""

    name: ClassVar[str] = "Sets2Sets"
    output_loss: ClassVar[None] = None  # weighted MSE on softmax + set term: no Gauss-Newton hook
    prefers_gauss_newton: ClassVar[bool] = False

    embedding_size: int = 32
    hidden_size: int = 32
    dropout_prob: float = 0.0
    lambda_set: float = 10.0
    history_gate: str = "full"
    compat: str = "correct"
    history_optimizer: str = "adam"

    def __post_init__(self):
        if self.history_gate not in HISTORY_GATES:
            raise ValueError(f"Sets2Sets.history_gate must be one of {HISTORY_GATES}, got {self.history_gate!r}")
        if self.compat not in COMPAT_MODES:
            raise ValueError(f"Sets2Sets.compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        if self.history_optimizer not in HISTORY_OPTIMIZERS:
            raise ValueError(f"Sets2Sets.history_optimizer must be one of {HISTORY_OPTIMIZERS}, "
                             f"got {self.history_optimizer!r}")
        if self.history_optimizer == "lazy_adam" and self.history_gate != "full":
            raise ValueError("Sets2Sets.history_optimizer='lazy_adam' updates the rows of the full history layer; "
                             f"history_gate={self.history_gate!r} has none (use history_gate='full')")

    @property
    def row_sparse_params(self) -> tuple[tuple[str, ...], ...]:
        """The parameter paths a training step updates row-sparsely (`erase_jax.lazy_adam`)."""
        return (HISTORY_PATH,) if self.history_optimizer == "lazy_adam" else ()

    def row_sparse_rows(self, context, batch: dict[str, jax.Array]) -> dict[tuple[str, ...], jax.Array]:
        """{W_f's path: the batch's distinct history items [K], sorted, padded with n_items}."""
        n = context.n_items
        budget = max(1, min(n, batch["items"].shape[0] * max(context.max_history_items, 1)))
        valid = jnp.arange(batch["items"].shape[1])[None, :] < batch["lengths"][:, None]
        items = jnp.where(valid, batch["items"], n).reshape(-1)
        return {HISTORY_PATH: jnp.unique(items, size=budget, fill_value=n)}

    def with_row_slabs(self, context, rows: dict[tuple[str, ...], jax.Array]):
        """The context under which W_f in the params is the slab of `rows[HISTORY_PATH]`."""
        return context.replace(history_rows=rows[HISTORY_PATH])

    def prepare(self, train: BasketRows, capacity: int | None = None) -> Sets2SetsContext:
        del capacity
        return Sets2SetsContext(jnp.asarray(training_item_weights(train)), train.n_items, train.max_history_baskets,
                                max_history_items(train))

    def network(self, context, init_key: jax.Array | None = None) -> Sets2SetsNetwork:
        slab = None if context.history_rows is None else context.history_rows.shape[0]
        return Sets2SetsNetwork(context.n_items, context.max_history_baskets, self.embedding_size, self.hidden_size,
                                self.dropout_prob, self.history_gate, init_key, slab)

    def init(self, key: jax.Array, context):
        """{"params": {...}} drawn from `key` (tensor i from its split key), without a forward pass."""
        ints = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.int32)
        return self.network(context, key).lazy_init(key, ints(1, 1), ints(1, 1), ints(1), ints(1), None)

    def logits(self, params, context, query: dict[str, jax.Array], key: jax.Array | None = None,
               n_steps: int | None = None) -> jax.Array:
        return self.network(context).apply(params, query["items"], query["baskets"], query["lengths"],
                                           query["n_baskets"], key, n_steps, context.history_rows)

    def loss_at(self, params, context, batch: dict[str, jax.Array], key, n_steps: int | None) -> jax.Array:
        """Weighted mean over rows of sum_i w_i (p_i - y_i)^2 + lambda * set_loss(p, y) (module docstring)."""
        p = jax.nn.softmax(self.logits(params, context, batch, key, n_steps), axis=-1)
        y = multi_hot(batch["targets"], p.shape[-1])
        squared = jnp.sum(context.item_weights * jnp.square(p - y), axis=-1)
        ranked = jax.lax.stop_gradient(p) if self.compat == "erase" else p
        return weighted_mean(squared + self.lambda_set * set_loss(ranked, y), batch["weight"])
