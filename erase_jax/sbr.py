"""Session-based recommendation on device: length-bucketed batches, the model base, evaluation.

Rows (`erase_jax.data.sequences.SequenceRows`) are padded to `max_length` (50) on the host.
Most prefixes are much shorter than 50 on session data, so each batch holds rows of one
length bucket (`bucket_widths`: 8, 16, 32, 50) and the model runs on the bucket's width only.
`lax.scan` needs one shape for every step, so batches stay [batch, 50] and carry their bucket
index; `SequenceModel.loss` picks the width with `lax.switch`, whose branches are compiled
once each (an XLA conditional runs only the taken branch). `SequenceBatcher.build(...,
mix_lengths=True)` draws RecBole's batches (any lengths together, run at the longest one's
bucket width; what `erase-jax train` uses by default, `sequence.mix_lengths`); without it a
batch never mixes buckets (rows are shuffled within buckets, batches across them), cheaper
per epoch but slower to learn.

Evaluation ranks every item for every prefix (no history masking: repeat consumption is
allowed, spec 5.1), on device in blocks per bucket, keeping only `lax.top_k` ids.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.interactions import Interactions
from erase_jax.data.loading import DataConfig, LoadedData, inject_spam, load_dataset, resolve_data_root
from erase_jax.data.sequences import SequenceConfig, SequenceRows, SequenceSplit, build_sequences, read_diginetica
from erase_jax.data.splits import chronological_split
from erase_jax.metrics import METRICS, per_row_metrics, ranking_metrics

SMALLEST_BUCKET = 8


def bucket_widths(max_length: int) -> tuple[int, ...]:
    """Padded widths: powers of two from 8 below `max_length`, then `max_length` itself."""
    widths, width = [], SMALLEST_BUCKET
    while width < max_length:
        widths.append(width)
        width *= 2
    return (*widths, max_length)


def bucket_of(lengths: np.ndarray, max_length: int) -> np.ndarray:
    """Index into `bucket_widths(max_length)` of the narrowest width holding each length."""
    return np.searchsorted(np.asarray(bucket_widths(max_length)), lengths).astype(np.int32)


# --------------------------------------------------------------------------- task data


@dataclasses.dataclass(frozen=True)
class SBRTask:
    train: SequenceRows
    valid: SequenceRows
    test: SequenceRows


def load_sequence_data(data: DataConfig, sequence: SequenceConfig, seed: int) -> tuple[LoadedData, SBRTask]:
    """Reads the configured data set and builds its split prefix rows.

    A folder holding `train-item-views.csv` is read as Diginetica clicks (sessions are its
    sequences); anything else goes through `load_dataset` (RecBole atomic files; SBR configs
    set the k-core minimums to 0, as the original applies none to SBR data). With
    `data.spam_ratio`, fake sessions are injected before the split (spec 3.3.1; the
    attack is "fraud_sessions" unless `data.spam_attack` says otherwise), copying the
    statistics of the sessions the task trains on: one per user, or cut by
    `sequence.session_gap` when grouping by session.
    """
    data = dataclasses.replace(data, spam_attack=data.spam_attack or "fraud_sessions")
    session_gap = sequence.session_gap if sequence.group_by == "session" else None
    clicks = _diginetica_file(data)
    if clicks is not None:
        inter, fraud = read_diginetica(clicks), None
        if data.spam_ratio is not None:
            inter, fraud = inject_spam(inter, data, seed, session_gap)
        resolved = dataclasses.asdict(data) | {"split": "sequence", "min_user_interactions": 0, "min_item_interactions": 0}
        resolved = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}
        loaded = LoadedData(inter, chronological_split(inter, data.split_ratios), str(clicks.parent), resolved, fraud=fraud)
    else:
        loaded = load_dataset(data, seed, session_gap)
    split = build_sequences(loaded.interactions, sequence, data.split_ratios)
    return loaded, SBRTask(split.train, split.valid, split.test)


def task_from_interactions(inter: Interactions, sequence: SequenceConfig, ratios=(0.8, 0.1, 0.1)) -> SBRTask:
    split: SequenceSplit = build_sequences(inter, sequence, ratios)
    return SBRTask(split.train, split.valid, split.test)


def _diginetica_file(data: DataConfig) -> Path | None:
    for folder in (resolve_data_root(data.data_root) / data.dataset, Path(data.dataset).expanduser()):
        if (folder / "train-item-views.csv").is_file():
            return (folder / "train-item-views.csv").resolve()
    return None


# --------------------------------------------------------------------------- batches


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SequenceBatcher:
    """One epoch of [batch, max_length] prefix batches, each from a single length bucket.

    Rows are stored sorted by bucket, plus one all-padding row at the end (index n_rows,
    weight 0) that fills the last batch of every bucket. The host draws the order
    (`shuffled_order`, from static bucket sizes only); gathering runs under jit.
    """

    prefixes: jax.Array  # int32 [n_rows + 1, max_length]
    lengths: jax.Array  # int32 [n_rows + 1]
    targets: jax.Array  # int32 [n_rows + 1]
    row_weight: jax.Array  # float32 [n_rows + 1]; 0 for the padding row and removed rows
    row_bucket: jax.Array  # int32 [n_rows + 1]
    bucket_sizes: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    batch_size: int = dataclasses.field(metadata=dict(static=True))
    mix_lengths: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def build(cls, train: SequenceRows, batch_size: int, mix_lengths: bool = False) -> "SequenceBatcher":
        """With `mix_lengths`, batches are drawn from all rows at once, as RecBole's are, and
        each runs at the width of its longest row's bucket (on ml-100k nearly always 50).
        Bucket-pure batches are cheaper but learn more slowly per epoch: GRU4Rec on the
        ml-100k sequences ends epoch 1 at mean loss 6.72 and valid MRR@10 0.0104 with them,
        6.63 and 0.0158 with mixed batches (RecBole: 6.61, 0.0165)."""
        if len(train) == 0:
            raise ValueError("no training rows (every sequence is shorter than 2 interactions?)")
        buckets = bucket_of(train.lengths, train.max_length)
        order = np.argsort(buckets, kind="stable")
        n_buckets = len(bucket_widths(train.max_length))
        pad_prefix = np.full((1, train.max_length), train.n_items, np.int32)
        return cls(
            prefixes=jnp.asarray(np.concatenate([train.prefixes[order], pad_prefix])),
            lengths=jnp.asarray(np.r_[train.lengths[order], 1].astype(np.int32)),
            targets=jnp.asarray(np.r_[train.targets[order], 0].astype(np.int32)),
            row_weight=jnp.asarray(np.r_[np.ones(len(train)), 0.0].astype(np.float32)),
            row_bucket=jnp.asarray(np.r_[buckets[order], 0].astype(np.int32)),
            bucket_sizes=tuple(int(c) for c in np.bincount(buckets, minlength=n_buckets)),
            batch_size=batch_size,
            mix_lengths=mix_lengths,
        )

    @property
    def n_rows(self) -> int:
        return sum(self.bucket_sizes)

    @property
    def n_batches(self) -> int:
        if self.mix_lengths:
            return -(-self.n_rows // self.batch_size)
        return sum(-(-size // self.batch_size) for size in self.bucket_sizes)

    def shuffled_order(self, seed: int, epoch: int) -> np.ndarray:
        """Row indices [n_batches * batch_size]: shuffled within buckets, batches shuffled
        (with `mix_lengths`: one shuffle of all rows)."""
        rng = np.random.default_rng([seed, epoch])
        if self.mix_lengths:
            order = np.full(self.n_batches * self.batch_size, self.n_rows, np.int32)
            order[: self.n_rows] = rng.permutation(self.n_rows)
            return order
        batches, start = [], 0
        for size in self.bucket_sizes:
            rows = start + rng.permutation(size)
            padded = np.full(-(-size // self.batch_size) * self.batch_size, self.n_rows, np.int64)
            padded[:size] = rows
            batches.extend(padded.reshape(-1, self.batch_size))
            start += size
        batches = np.asarray(batches, np.int32).reshape(-1, self.batch_size)
        return batches[rng.permutation(len(batches))].reshape(-1)

    def epoch(self, key: jax.Array, order: jax.Array) -> dict[str, jax.Array]:
        del key  # nothing is sampled: CE over all items needs no negatives
        shape = (self.n_batches, self.batch_size)
        return {
            "items": self.prefixes[order].reshape(*shape, -1),
            "lengths": self.lengths[order].reshape(shape),
            "targets": self.targets[order].reshape(shape),
            "weight": self.row_weight[order].reshape(shape),
            "bucket": jnp.max(self.row_bucket[order].reshape(shape), axis=1),
        }


# --------------------------------------------------------------------------- models


@struct.dataclass
class SequenceShape:
    """Context of a sequence model that needs only the sizes of its data."""

    n_items: int = struct.field(pytree_node=False)
    max_length: int = struct.field(pytree_node=False)


class SequenceModel:
    """Base of the SBR models: CE over all items on a sequence representation.

    A model defines `init(key, context)`, `represent(params, context, items, lengths, key)`
    -> [n, d] (dropout active when `key` is not None) and `output_items(params)` -> [n_items, d];
    scores are their inner products, as in RecBole's `full_sort_predict`. The padding id
    `n_items` never enters the scores (RecBole scores its pad item 0 and masks it later).
    """

    task: ClassVar[str] = "SBR"
    trainable: ClassVar[bool] = True
    output_loss: ClassVar[str] = "softmax_cross_entropy"  # what `loss` is of `output_loss_parts`' outputs

    def prepare(self, train: SequenceRows, capacity: int | None = None) -> SequenceShape:
        del capacity
        return SequenceShape(train.n_items, train.max_length)

    def epoch_context(self, context, key: jax.Array):
        del key
        return context

    def scores(self, params, context, query: dict[str, jax.Array]) -> jax.Array:
        representation = self.represent(params, context, query["items"], query["lengths"], None)
        return representation @ self.output_items(params).T

    def loss(self, params, context, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        """Weighted mean cross-entropy of the next item over all items (RecBole `CE` loss)."""
        logits, weight, _ = self.output_loss_parts(params, context, batch, key)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_p, batch["targets"][:, None], axis=1)[:, 0]
        return jnp.sum(weight * nll) / jnp.maximum(jnp.sum(weight), 1e-12)

    def output_loss_parts(self, params, context, batch: dict[str, jax.Array], key: jax.Array):
        """(logits [n, n_items], row weights, None): `loss` is the weighted mean softmax cross-entropy
        of these logits at batch["targets"], with no penalty term. A bucketed batch runs at its
        bucket's width (`lax.switch`). Also the hook of the Gauss-Newton curvature
        (`erase_jax.unlearn.influence.gauss_newton_operator`), which needs the logits apart.
        """
        widths = bucket_widths(batch["items"].shape[-1])

        def at_width(width):
            return lambda params, batch, key: self.represent(params, context, batch["items"][:, :width], batch["lengths"], key)

        if "bucket" not in batch:
            representation = at_width(batch["items"].shape[-1])(params, batch, key)
        else:
            representation = jax.lax.switch(batch["bucket"], [at_width(w) for w in widths], params, batch, key)
        return representation @ self.output_items(params).T, batch["weight"], None


def last_position(values: jax.Array, lengths: jax.Array) -> jax.Array:
    """values[:, lengths - 1] for [n, L, ...] values (RecBole `gather_indexes`)."""
    return jnp.take_along_axis(values, (lengths - 1)[:, None, None], axis=1)[:, 0]


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout (torch's), a no-op when `key` is None (evaluation).

    The mask is keep = hash(element index, key) >= rate * 2^32: `key` gives two 32-bit seeds
    and every element's index is mixed with them by two rounds of the murmur3 finaliser (a
    bijection on 32 bits with full avalanche). A threefry draw per element (what
    `jax.random.bernoulli` does) cost about a quarter of SASRec's training step on CPU; this
    costs a few integer operations fused into the consumer. Masks are as random as dropout
    needs, but not threefry's stream: the same key gives other masks than `bernoulli` would.
    """
    if key is None or rate == 0.0:
        return x
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    index = jax.lax.iota(jnp.uint32, x.size).reshape(x.shape)
    bits = _fmix32(_fmix32(index * jnp.uint32(0x9E3779B9) + seeds[0]) ^ seeds[1])
    keep = bits >= jnp.uint32(min(round(rate * 2.0**32), 2**32 - 1))
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _fmix32(x: jax.Array) -> jax.Array:
    """The murmur3 32-bit finaliser."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w for x of any rank, as one 2-D matmul on the flattened leading axes.

    XLA's CPU backend differentiates a [n, L, d] @ [d, k] product about 3x slower than the
    same product on [n * L, d] (measured on the 2-core machine, 12800 x 64 @ 64 x 384).
    """
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def gru_scan(w_ih, w_hh, b_ih, b_hh, inputs: jax.Array, hidden_size: int) -> jax.Array:
    """A one-layer GRU over [n, L, d] inputs from a zero state; returns every step [n, L, h].

    torch.nn.GRU's equations and gate order (r, z, n); weights laid out [d, 3h] / [h, 3h].
    Batch-major wrapper of `gru_time_major`.
    """
    states = gru_time_major(w_ih, w_hh, b_ih, b_hh, jnp.swapaxes(inputs, 0, 1), hidden_size)
    return jnp.swapaxes(states, 0, 1)


def gru_time_major(w_ih, w_hh, b_ih, b_hh, inputs: jax.Array, hidden_size: int,
                   lengths: jax.Array | None = None) -> jax.Array:
    """`gru_scan` on time-major [L, n, d] inputs: every state [L, n, h], or with `lengths` only
    the state after each row's last item, [n, h].

    The input projection of all steps is one matmul before the scan, already in the scan's
    layout (no [n, L, 3h] transpose); with `lengths` the scan carries the last state instead
    of stacking all of them, so neither the stack nor its gradient is materialised.
    """
    projected = dense(inputs, w_ih) + b_ih  # [L, n, 3h]
    initial = jnp.zeros((inputs.shape[1], hidden_size), inputs.dtype)

    def cell(hidden, x):
        recurrent = hidden @ w_hh + b_hh
        x_r, x_z, x_n = jnp.split(x, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(recurrent, 3, axis=-1)
        reset = jax.nn.sigmoid(x_r + h_r)
        update = jax.nn.sigmoid(x_z + h_z)
        candidate = jnp.tanh(x_n + reset * h_n)
        return (1.0 - update) * candidate + update * hidden

    if lengths is None:
        def step(hidden, x):
            hidden = cell(hidden, x)
            return hidden, hidden

        return jax.lax.scan(step, initial, projected)[1]

    def step_keep_last(carry, inputs_t):
        hidden, last = carry
        x, t = inputs_t
        hidden = cell(hidden, x)
        return (hidden, jnp.where((t == lengths - 1)[:, None], hidden, last)), None

    steps = jnp.arange(inputs.shape[0])
    return jax.lax.scan(step_keep_last, (initial, initial), (projected, steps))[0][1]


# torch initialisers on a [fan_in, fan_out]-laid-out matrix
def xavier_normal(key, shape):
    return jax.random.normal(key, shape) * np.sqrt(2.0 / (shape[0] + shape[1]))


def xavier_uniform(key, shape):
    bound = np.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def uniform(key, shape, bound):
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class _BucketBlocks:
    width: int
    items: jax.Array  # int32 [n_blocks, block, width]
    lengths: jax.Array  # int32 [n_blocks, block]
    rows: np.ndarray  # the eval rows in this bucket, in block order


_PREPARED: dict[tuple[int, int], tuple] = {}


def _blocks(rows: SequenceRows, block_size: int) -> list[_BucketBlocks]:
    """Eval rows grouped by bucket, each bucket padded to whole blocks; built once per set."""
    key = (id(rows), block_size)
    cached = _PREPARED.get(key)
    if cached is not None and cached[0]() is rows:
        return cached[1]
    buckets = bucket_of(rows.lengths, rows.max_length)
    out = []
    for index, width in enumerate(bucket_widths(rows.max_length)):
        members = np.flatnonzero(buckets == index)
        if not len(members):
            continue
        block = min(block_size, 1 << max(len(members) - 1, 0).bit_length())
        n_blocks = -(-len(members) // block)
        items = np.full((n_blocks * block, width), rows.n_items, np.int32)
        lengths = np.ones(n_blocks * block, np.int32)
        items[: len(members)] = rows.prefixes[members, :width]
        lengths[: len(members)] = rows.lengths[members]
        out.append(_BucketBlocks(width, jnp.asarray(items.reshape(n_blocks, block, width)),
                                 jnp.asarray(lengths.reshape(n_blocks, block)), members))
    _PREPARED[key] = (weakref.ref(rows), out)
    weakref.finalize(rows, _PREPARED.pop, key, None)
    return out


@functools.partial(jax.jit, static_argnames=("model", "k"))
def _ranked_blocks(model, k, params, context, items, lengths):
    def one_block(block):
        block_items, block_lengths = block
        scores = model.scores(params, context, {"items": block_items, "lengths": block_lengths})
        return jax.lax.top_k(scores, k)[1].astype(jnp.int32)

    return jax.lax.map(one_block, (items, lengths))


def top_k_sequences(model, params, context, rows: SequenceRows, k: int, block_size: int = 1024) -> np.ndarray:
    """The k best-scored items for every row's prefix, best first: int32 [len(rows), k]."""
    top = np.zeros((len(rows), k), np.int32)
    for bucket in _blocks(rows, block_size):
        ranked = np.asarray(_ranked_blocks(model, k, params, context, bucket.items, bucket.lengths))
        top[bucket.rows] = ranked.reshape(-1, k)[: len(bucket.rows)]
    return top


def evaluate_sbr(model, params, context, rows: SequenceRows, ks=(10, 20), metrics=METRICS,
                 block_size: int = 1024, per_row: bool = False):
    """Full-ranking metrics over prefix rows, one positive (the next item) per row (spec 5.1)."""
    if len(rows) == 0:
        raise ValueError("the evaluation set has no rows")
    k_max = max(ks)
    if k_max > rows.n_items:
        raise ValueError(f"top-{k_max} asked for but there are only {rows.n_items} items")
    hits = top_k_sequences(model, params, context, rows, k_max, block_size) == rows.targets[:, None]
    n_positives = np.ones(len(rows), np.int64)
    summary = ranking_metrics(hits, n_positives, ks, metrics)
    if per_row:
        return summary, per_row_metrics(hits, n_positives, ks)
    return summary


def summary(loaded: LoadedData, task: SBRTask) -> dict[str, Any]:
    inter = loaded.interactions
    return {
        "source": loaded.source,
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "n_interactions": len(inter),
        "n_train": len(task.train),
        "n_valid": len(task.valid),
        "n_test": len(task.test),
        "resolved_data": loaded.resolved,
    }


def build_task(data: DataConfig, sequence: SequenceConfig, seed: int, loaded: LoadedData | None = None):
    """(loaded data, SBRTask, summary) for the train job; `loaded` replaces the configured data."""
    if loaded is None:
        loaded, task = load_sequence_data(data, sequence, seed)
    else:
        task = task_from_interactions(loaded.interactions, sequence, data.split_ratios)
    return loaded, task, summary(loaded, task)
