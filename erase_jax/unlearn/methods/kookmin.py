"""Kookmin: re-initialise the least informative weights, then fine-tune on retain data.

NeurIPS 2023 machine-unlearning competition entry (findings: arXiv 2406.09073); ERASE's
`trainer.kookmin` (unlearning-algorithms spec 6.3; detail spec section 3). Per request, with
F_n = |F| (the request's training rows), K = 128 F_n and U = 16 F_n:

    g_F = sum_{b in F} grad mean-loss(b) / K
    g_R = sum_{b in C} grad mean-loss(b) / K + sum_{b in R} grad mean-loss(b[:k]) / K,  k = max(0, K - |C|)
    s   = g_R - g_F
    per tensor P with n entries: the m = max(1, floor(n * kookmin_init_rate)) entries with the
      smallest |s| are overwritten with fresh initial values (mask M_P)
    the Adam state of every masked tensor is reset (all tensors: every one gets >= 1 entry)
    E = 1 + U // |R| epochs on R, each a fresh shuffle capped at U rows (batches of 256), Adam
      at lr = 0.1 x learning_rate, gradients of the entries in M_P multiplied by 10

Decisions where the spec leaves a choice (all faithful to the original unless said):

* Batches: F, C and R are cut into loader batches of 256 after a shuffle of their real rows;
  sums of batch means are taken over those batches (the double normalisation Q7). The retain
  truncation count k is never decremented (Q-KM-1): every R batch is used, each cut to its
  first k rows, and none when k = 0.
* Ties in the smallest-|s| selection (Q-KM-2; embedding rows untouched by the request have
  exactly zero gradient): lowest flat index first (a stable sort of |s|). Exactly m entries are
  chosen per tensor, m = max(1, floor(n * rate)) (Python `int` of a positive float).
* Fresh values: rank 4 kaiming-normal (fan_out, relu gain); rank 2 kaiming-uniform with
  a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); other ranks N(0, 0.02^2). fan_in follows
  torch's layout: shape[1] for embedding tables ([rows, dim], as torch), shape[0] for every
  other matrix (flax `kernel` leaves and the sequence models' weights are stored [in, out],
  torch [out, in]).
* Contexts: the forget gradient uses `context_before` (e.g. the graph that trained the model);
  the C and R gradients and the fine-tuning use `context_after` (the original never rebuilds a
  graph model's graph, Q6; here the graph without the removed interactions is the one the
  model should fit from now on).
* Optimiser: torch-style Adam with a step count PER TENSOR (torch keeps one per parameter), so
  that resetting one tensor's state (step 5) is exact (`finetune.adam_step`). It persists
  across requests in the method state, as the original's trainer optimiser does.
* The time limit is not checked.

Where it runs. A request is a few calls of ONE compiled program, `_kookmin_pass`, one per phase:
the F pass of the score (context_before, sign -1), the C and R pass (context_after, +1, batch
numbers running on from F's), then each fine-tuning epoch (one Adam step per batch, masked
gradients x 10). The program is a `fori_loop` over the pass's loader batches: each batch is
gathered on device from the request's rows, joined F | C | R, through a plan of row indices
[n_max, 256] built on the host (`stacked_batches`); n_max is fixed by the request's padded
shapes (F's batches, or C's and R's), so the program compiles once per request shape, ahead of
the stream (`protocol.shapes`), and the loop's trip count is the pass's real batch count, so
padded batches are never visited and never touch the Adam state. A request without clean rows
passes F in C's place (no batch reads it), keeping the shape. The shuffles, the selection of the
re-initialised entries and their fresh values run in numpy, from a generator seeded by the
request key (`request_generator`); fresh values are drawn for the m chosen entries only (they are
independent, so this is the same distribution as redrawing the whole tensor). The draws are
numpy's, not JAX's: the distributions are the original's and a run is reproducible from its seed.
Why: a single compiled request program (shuffles, selection and draws on device) compiled for
far longer than its stream's requests ran; a loop over one batch's gradient and Adam step
compiles about as fast as that step alone (docs/notes/2026-12-07-request-streams.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.unlearn.methods.base import RequestData, register
from erase_jax.unlearn.methods.batches import LOADER_BATCH
from erase_jax.unlearn.methods.finetune import AdamState, adam_step, path_name

GRADIENT_ROWS_PER_FORGET_ROW = 128  # K = 128 F_n (dispatcher override)
FINETUNE_ROWS_PER_FORGET_ROW = 16  # U = R_upd = 16 F_n (dispatcher override)
KOOKMIN_LR_SCALE = 0.1  # the original scales the config lr by 0.1 before building the trainer
SCALE_FOR_REINIT_PARAMS = 10.0  # hard-coded gradient multiplier on re-initialised entries
GENERATOR_PART = 4  # the request key's host stream for Kookmin's draws (the CF task's negatives use 0 and 2)


def reinit_count(n_entries: int, rate: float) -> int:
    """m = max(1, int(n * rate)): entries re-initialised in a tensor of n entries."""
    return max(1, int(n_entries * rate))


def smallest_magnitude_entries(score: np.ndarray, rate: float) -> np.ndarray:
    """The flat indices of the reinit_count(size, rate) entries with the smallest |score|, ties
    to the lowest flat index (a stable sort of |score|).

    An embedding table's rows that the request never touched have a score of exactly zero, and
    usually there are more than m of them: then the first m zeros in index order are the
    answer, found without sorting."""
    m = reinit_count(score.size, rate)
    magnitude = np.abs(np.asarray(score)).ravel()
    zeros = np.flatnonzero(magnitude == 0)
    if len(zeros) >= m:
        return zeros[:m]
    return np.argsort(magnitude, kind="stable")[:m]


def fresh_values(name: str, shape: tuple, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """`n` draws (default: the whole tensor, shaped) of the original's re-initialisation of a
    tensor of this shape (module docstring), float32."""
    size = math.prod(shape) if n is None else n
    if len(shape) == 4:  # kaiming_normal_(mode="fan_out", nonlinearity="relu"), torch layout
        values = rng.standard_normal(size) * math.sqrt(2.0 / (shape[0] * math.prod(shape[2:])))
    elif len(shape) == 2:  # kaiming_uniform_(a=sqrt(5)): bound = 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(shape[1] if "embedding" in name.lower() else shape[0])
        values = rng.uniform(-bound, bound, size)
    else:
        values = 0.02 * rng.standard_normal(size)
    values = values.astype(np.float32)
    return values.reshape(shape) if n is None else values


def reinitialise(params, score, rate: float, rng: np.random.Generator):
    """(params with the smallest-|score| entries of every tensor redrawn, masks), numpy arrays."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    new_leaves, masks = [], []
    for (path, p), s in zip(leaves, treedef.flatten_up_to(score)):
        chosen = smallest_magnitude_entries(s, rate)
        new, mask = np.array(p), np.zeros(p.shape, bool)
        new.flat[chosen] = fresh_values(path_name(path), p.shape, rng, len(chosen)).astype(new.dtype)
        mask.flat[chosen] = True
        new_leaves.append(new)
        masks.append(mask)
    return treedef.unflatten(new_leaves), treedef.unflatten(masks)


def request_generator(key, part: int = GENERATOR_PART) -> np.random.Generator:
    """A numpy generator seeded by a request's PRNG key (raw or typed) and `part`."""
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng([*np.asarray(data).ravel().tolist(), part])


def loader_row_batches(rng: np.random.Generator, weight: np.ndarray, cap: int | None = None,
                       first: int | None = None) -> list[np.ndarray]:
    """A loader pass's batches as row indices: the real rows (weight > 0) in random order, at
    most `cap` of them, cut into batches of LOADER_BATCH, each cut to its `first` rows; empty
    batches left out."""
    rows = rng.permutation(np.flatnonzero(weight > 0))[:cap]
    batches = [rows[i:i + LOADER_BATCH][:first] for i in range(0, len(rows), LOADER_BATCH)]
    return [b for b in batches if len(b)]


def loader_batch_count(n_rows: int) -> int:
    """Loader batches that `n_rows` rows fill at most (the last one partly)."""
    return -(-n_rows // LOADER_BATCH)


def stacked_batches(batches: list[tuple[np.ndarray, int]], n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """A pass's loader batches, each (rows, offset of its part in the joined F | C | R rows), as
    one device-gather plan: (index [n_max, LOADER_BATCH] int32, lengths [n_max] int32). Batch
    b's padding positions repeat its part's first row (they get weight 0 on device); batches past
    len(batches) have length 0 and are never visited."""
    if len(batches) > n_max:
        raise ValueError(f"{len(batches)} loader batches do not fit the request's {n_max}")
    index = np.zeros((n_max, LOADER_BATCH), np.int32)
    lengths = np.zeros(n_max, np.int32)
    for b, (rows, offset) in enumerate(batches):
        index[b] = offset
        index[b, :len(rows)] = rows + offset
        lengths[b] = len(rows)
    return index, lengths


def _placement(value, like: jax.Array):
    sharding = like.sharding
    if np.shape(value) != like.shape and hasattr(sharding, "mesh"):  # a scalar beside a sharded tensor
        sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return sharding


def placed(values, like):
    """The tree `values` (host or device leaves) on the devices of the matching leaves of `like`,
    committed as a jitted program's outputs are (one transfer), so that every call of the batch
    step sees the same argument placement and compiles once."""
    values = jax.tree.map(lambda v: v if isinstance(v, jax.Array) and v.committed else np.asarray(v), values)
    return jax.device_put(values, jax.tree.map(_placement, values, like))


def fresh_adam_state(params) -> AdamState:
    """`finetune.adam_init` built on the host (no program to compile)."""
    zeros = jax.tree.map(lambda p: np.zeros(p.shape, p.dtype), params)
    count = jax.tree.map(lambda p: np.zeros((), np.int32), params)
    return AdamState(*(placed(tree, params) for tree in (count, zeros, zeros)))


@functools.partial(jax.jit, static_argnums=0)
def _kookmin_pass(model, params, opt_state, score, masks, parts, index, lengths, n_batches, context, sign, adam_on, lr,
                  key, phase, first):
    """One loader pass: batches 0 .. n_batches - 1 of the plan (`stacked_batches`) over the
    joined rows of `parts` (F, C, R), in order, as a `fori_loop` whose trip count is the real
    batch count (padded batches are never visited). Each batch: score + sign x grad
    mean-loss(batch) and, when `adam_on`, one Adam step at `lr` with the masked entries'
    gradients x 10; its loss key is the request key folded with (phase, first + b).
    Returns (params, opt_state, score, losses [n_max], 0 past n_batches)."""
    rows = {name: jnp.concatenate([part[name] for part in parts]) for name in parts[0]}

    def batch_step(b, carry):
        params, opt_state, score, losses = carry
        batch = {name: values[index[b]] for name, values in rows.items()}
        real = jnp.arange(LOADER_BATCH) < lengths[b]
        batch["weight"] = jnp.where(real, batch["weight"], 0).astype(jnp.float32)
        batch_key = jax.random.fold_in(jax.random.fold_in(key, phase), first + b)
        loss, grads = jax.value_and_grad(lambda p: model.loss(p, context, batch, batch_key))(params)
        score = jax.tree.map(lambda s, g: s + sign * g, score, grads)
        scaled = jax.tree.map(lambda g, m: jnp.where(m, SCALE_FOR_REINIT_PARAMS * g, g), grads, masks)
        stepped, stepped_state = adam_step(params, opt_state, scaled, lr)
        keep = lambda new, old: jax.tree.map(lambda a, c: jnp.where(adam_on, a, c), new, old)
        return keep(stepped, params), keep(stepped_state, opt_state), score, losses.at[b].set(loss)

    losses = jnp.zeros(index.shape[0], jnp.float32)
    return jax.lax.fori_loop(0, n_batches, batch_step, (params, opt_state, score, losses))


@register
@dataclasses.dataclass(frozen=True)
class Kookmin:
    """Kookmin with the original's names and defaults (module docstring).

    kookmin_init_rate: fraction of each tensor's entries re-initialised (`--kookmin_init_rate`).
    learning_rate: the config learning rate; the method trains at 0.1 x this (as the original).
    """

    name: ClassVar[str] = "kookmin"

    kookmin_init_rate: float = 0.01
    learning_rate: float = 1e-3

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(8 * n_forget_rows, 32)  # the original's dispatcher rule

    def init(self, model, params):
        return fresh_adam_state(params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        rng = request_generator(key)
        params = placed(params, params)
        # the joined rows F | C | R (C stands in as F when absent: no batch reads it, and the
        # request's shapes, hence its compiled pass, stay those of a request with clean rows)
        parts = (request.forget, request.forget if request.clean is None else request.clean, request.retain)
        weights = [np.asarray(part["weight"]) for part in parts]
        offsets = np.cumsum([0] + [len(w) for w in weights[:-1]])
        n_max = max(loader_batch_count(len(weights[0])),  # F's pass, or C's and R's
                    loader_batch_count(len(weights[1])) + loader_batch_count(len(weights[2])))
        gradient_rows = GRADIENT_ROWS_PER_FORGET_ROW * request.n_forget_rows
        finetune_rows = FINETUNE_ROWS_PER_FORGET_ROW * request.n_forget_rows
        lr = np.float32(KOOKMIN_LR_SCALE * self.learning_rate)
        no_masks = placed(jax.tree.map(lambda p: np.zeros(p.shape, bool), params), params)
        running = placed(jax.tree.map(lambda p: np.zeros(p.shape, p.dtype), params), params)  # signed gradient sum
        opt_state = fresh_adam_state(params)  # every tensor is masked, so every tensor's state is reset

        def run_pass(params, opt_state, running, masks, batches, context, sign, adam_on, phase, first):
            index, lengths = stacked_batches(batches, n_max)
            return _kookmin_pass(model, params, opt_state, running, masks, parts, index, lengths, np.int32(len(batches)),
                                 context, np.float32(sign), np.bool_(adam_on), lr, key, np.int32(phase), np.int32(first))

        # the score: F with context_before and sign -1; then C, and R cut to k rows per batch, with
        # context_after and +1 (the shuffles drawn in this order, batch numbers running on)
        n_clean = 0 if request.clean is None else int(np.sum(weights[1] > 0))
        forget_batches = [(rows, offsets[0]) for rows in loader_row_batches(rng, weights[0])]
        after_batches = [] if request.clean is None else [(rows, offsets[1]) for rows in loader_row_batches(rng, weights[1])]
        after_batches += [(rows, offsets[2])
                          for rows in loader_row_batches(rng, weights[2], first=max(0, gradient_rows - n_clean))]
        if forget_batches:
            _, _, running, _ = run_pass(params, opt_state, running, no_masks, forget_batches, request.context_before,
                                        -1.0, False, 0, 0)
        if after_batches:
            _, _, running, _ = run_pass(params, opt_state, running, no_masks, after_batches, request.context_after,
                                        1.0, False, 0, len(forget_batches))
        score = jax.tree.map(lambda s: np.asarray(s) / gradient_rows, running)

        new_params, masks = reinitialise(params, score, self.kookmin_init_rate, rng)
        n_reinitialised = int(sum(np.sum(m) for m in jax.tree.leaves(masks)))
        params, masks = placed(new_params, params), placed(masks, params)

        n_retain = int(np.sum(weights[2] > 0))
        n_epochs = 1 + finetune_rows // n_retain if n_retain > 0 else 0
        losses = np.zeros(0, np.float32)
        for epoch in range(n_epochs):
            batches = [(rows, offsets[2]) for rows in loader_row_batches(rng, weights[2], cap=finetune_rows)]
            params, opt_state, running, losses = run_pass(params, opt_state, running, masks, batches,
                                                          request.context_after, 0.0, True, 1 + epoch, 0)
            losses = np.asarray(losses)[:len(batches)]
        diagnostics = {
            "reinitialised": n_reinitialised,
            "score_norm": float(np.sqrt(sum(np.sum(np.square(s, dtype=np.float64)) for s in jax.tree.leaves(score)))),
            "finetune_epochs": n_epochs,
            "finetune_loss": float(np.mean(losses)) if len(losses) else 0.0,
        }
        return params, opt_state, diagnostics
