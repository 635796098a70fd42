"""A next-basket batch cut into chunks of rows, each chunk run at its own bucket's shape.

The unlearning methods hand a model one padded batch per row set (a request's forget, clean and
retain rows, `erase_jax.tasks.nbr.NBRRequestRows`), padded to the widest history among them: on
Ta-Feng up to 480 occurrences in 48 baskets, while the median history has 31 in 5. Differentiated
in one piece, such a batch holds every row's activations at the widest shape at once: GIF's
curvature products over a request's 129 rows asked DNNTSP for 32.8 GB
(docs/notes/2026-12-07-next-basket.md). Here the rows are sorted by history length and cut into
chunks of a static number of rows (about `CHUNK_CELLS` rows x width x steps); each chunk runs at
the smallest (width, steps) of `chunk_shapes` that holds its histories (`lax.switch`, each branch
compiled once; histories are left-aligned, so cutting trailing padding changes nothing), and a
`lax.scan` over the chunks adds up their contributions. Memory is then one chunk's, and each row
costs its own width's work.

`chunk_shapes` is the training buckets' ladder (`bucket_shapes`: every doubling width, each with
every doubling step count up to it) without the step counts far below a width: a chunk of
histories w occurrences wide runs at no fewer than w / `OCCURRENCES_PER_STEP` basket steps (the
top one, min(w, max_steps), always stays). Every branch of a switch is compiled, once per switch
in a program, and a method's request holds several (gradients, curvature products), so the
branch count is most of a stream's compile time; on Ta-Feng's request rows (median history 31
occurrences in 5 baskets) the cut drops about half the branches for a few per cent more
padding (benchmarks/results/nbr_method_run_phases_tafeng.json). The same ladder serves the
user queries of the evaluators (`erase_jax.evaluators.basket_queries`).

* `RowChunks.weighted_sum(fn, like)`: sum over chunks c of W_c fn(rows_c, steps_c), W_c the
  chunk's weight; chunks of padding only are skipped. The curvature products of the influence
  methods use it (`erase_jax.unlearn.influence.curvature`), each chunk linearised inside the scan.
* `chunked_loss`: a batch's weighted-mean loss whose gradient is summed over chunks (a custom VJP,
  as `base.bucketed_loss`: differentiating through `lax.switch` would carry every branch's
  residuals). Higher derivatives go through the custom VJP's rules and are not memory-bounded:
  the curvature products take `weighted_sum` instead.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.baskets import bucket_shapes, occurrence_widths, step_widths
from erase_jax.unlearn.influence.sharding import pad_rows
from erase_jax.unlearn.influence.trees import tree_scale

CHUNK_CELLS = 8 * 64 * 8 * 32  # rows x history width x basket steps of one chunk (5 rows at 480 x 48)
OCCURRENCES_PER_STEP = 8  # a chunk w occurrences wide runs at >= w / OCCURRENCES_PER_STEP steps (module doc)


def chunk_shapes(width: int, max_steps: int) -> tuple[tuple[int, int], ...]:
    """The (occurrence width, basket steps) a chunk can run at: `bucket_shapes(width, max_steps)`
    without a width's step counts below width / OCCURRENCES_PER_STEP, its largest always kept
    (module doc)."""
    shapes = []
    for w in occurrence_widths(width):
        ladder = [t for ww, t in bucket_shapes(width, max_steps) if ww == w]
        shapes += [(w, t) for t in ([t for t in ladder if t * OCCURRENCES_PER_STEP >= w] or ladder[-1:])]
    return tuple(shapes)


def chunk_buckets(width: int, max_steps: int) -> tuple[tuple[tuple[int, int], ...], np.ndarray, np.ndarray, np.ndarray]:
    """(chunk shapes, widths ladder, steps ladder, table [n_widths, n_steps] -> shape index).

    A chunk whose longest history has length L and most baskets B runs at width
    w = widths[searchsorted(widths, L)] and the smallest step count of `chunk_shapes` at w that
    is >= steps[searchsorted(steps, B)] (B <= L <= w, so that count exists whenever w is on the
    ladder below `max_steps`; otherwise B <= max_steps, the largest at w): the table maps the two
    ladder positions to the index of that shape in `chunk_shapes(width, max_steps)`.
    """
    shapes = chunk_shapes(width, max_steps)
    widths, steps = np.asarray(occurrence_widths(width)), np.asarray(step_widths(max_steps))
    index = {shape: i for i, shape in enumerate(shapes)}
    table = np.zeros((len(widths), len(steps)), np.int32)
    for wi, w in enumerate(widths):
        allowed = [s for s in steps if (int(w), int(s)) in index]
        for ti, t in enumerate(steps):
            fitting = [s for s in allowed if s >= t] or allowed[-1:]  # t > w cannot happen (B <= w)
            table[wi, ti] = index[(int(w), int(fitting[0]))]
    return shapes, widths, steps, table


def chunk_bucket(lengths: jax.Array, n_baskets: jax.Array, width: int, max_steps: int) -> jax.Array:
    """The index into `chunk_shapes(width, max_steps)` of the smallest shape holding histories of
    at most `lengths.max()` occurrences in `n_baskets.max()` baskets (traced)."""
    _, widths, steps, table = chunk_buckets(width, max_steps)
    wi = jnp.searchsorted(jnp.asarray(widths), jnp.maximum(lengths.max(), 1))
    ti = jnp.minimum(jnp.searchsorted(jnp.asarray(steps), jnp.maximum(n_baskets.max(), 1)), len(steps) - 1)
    return jnp.asarray(table)[wi, ti]


def chunk_rows(width: int, max_steps: int) -> int:
    """Rows per chunk for histories padded to `width` occurrences and `max_steps` baskets."""
    return max(1, CHUNK_CELLS // (width * max_steps))


@dataclasses.dataclass(frozen=True)
class RowChunks:
    """A batch's rows sorted by history length and stacked in chunks (module doc).

    chunks: the batch's leaves reshaped to [n_chunks, rows, ...]; bucket: int32 [n_chunks], the
    shape index of each chunk, -1 for a chunk of padding rows only; shapes: `chunk_shapes`.
    """

    chunks: dict
    bucket: jax.Array
    shapes: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, batch: dict, max_history_baskets: int) -> RowChunks:
        width = batch["items"].shape[1]
        max_steps = min(width, max_history_baskets)
        rows = chunk_rows(width, max_steps)
        real = batch["weight"] > 0
        order = jnp.argsort(jnp.where(real, batch["lengths"], jnp.iinfo(jnp.int32).max), stable=True)
        ordered = pad_rows(jax.tree.map(lambda a: a[order], batch), rows)
        chunks = jax.tree.map(lambda a: a.reshape(-1, rows, *a.shape[1:]), ordered)
        in_use = chunks["weight"] > 0
        lengths, n_baskets = (jnp.where(in_use, chunks[name], 0) for name in ("lengths", "n_baskets"))
        buckets = jax.vmap(lambda a, b: chunk_bucket(a, b, width, max_steps))(lengths, n_baskets)
        bucket = jnp.where(jnp.any(in_use, axis=1), buckets, -1)
        return cls(chunks, bucket, chunk_shapes(width, max_steps))

    def weighted_sum(self, fn, like):
        """sum over chunks of W_c fn(rows_c, steps_c): rows_c cut to the chunk's width, steps_c its
        static step bound; `like` a pytree shaped like fn's result (the zero of the sum)."""
        zeros = jax.tree.map(jnp.zeros_like, like)

        def at_shape(width, steps):
            def run(rows):
                return fn(dict(rows, items=rows["items"][:, :width], baskets=rows["baskets"][:, :width]), steps)

            return run

        branches = [lambda rows: zeros] + [at_shape(w, t) for w, t in self.shapes]

        def add_chunk(total, chunk):
            rows, bucket = chunk
            weight = jnp.sum(rows["weight"])
            out = jax.lax.switch(bucket + 1, branches, rows)
            return jax.tree.map(lambda acc, o: acc + weight * o, total, out), None

        return jax.lax.scan(add_chunk, zeros, (self.chunks, self.bucket))[0]


def is_large(batch: dict, max_history_baskets: int) -> bool:
    """Whether the batch holds more than one chunk's cells (then it is worth chunking)."""
    n, width = batch["items"].shape
    return n * width * min(width, max_history_baskets) > CHUNK_CELLS


def chunked_loss(loss_at, params, context, batch: dict, key) -> jax.Array:
    """The weighted mean over the batch's rows of `loss_at(params, context, rows, key, n_steps)`,
    its gradient summed over chunks (module doc). `loss_at` must be a weighted row mean."""
    plan = RowChunks.of(batch, context.max_history_baskets)
    total = jnp.maximum(jnp.sum(batch["weight"]), 1e-12)

    def value_and_grad(params, key):
        def chunk(rows, steps):
            return jax.value_and_grad(lambda p: loss_at(p, context, rows, key, steps))(params)

        value, grad = plan.weighted_sum(chunk, (jnp.zeros((), jnp.float32), params))
        return value / total, tree_scale(1.0 / total, grad)

    @jax.custom_vjp
    def loss(params, key):
        return value_and_grad(params, key)[0]

    def backward(grad, cotangent):
        return tree_scale(cotangent, grad), None

    loss.defvjp(value_and_grad, backward)
    return loss(params, key)
