"""The curvature of an influence step: exact Hessian or generalised Gauss-Newton, and its damping."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from erase_jax.unlearn.influence.blocks import ParameterBlock
from erase_jax.unlearn.influence.hvp import hvp_operator
from erase_jax.unlearn.influence.sharding import (
    data_parallel_devices,
    data_parallel_loss,
    pad_rows,
)
from erase_jax.unlearn.influence.trees import tree_scale

Path = tuple[str, ...]


SOFTMAX_CROSS_ENTROPY = "softmax_cross_entropy"  # l(z) = -log softmax(z)[target], z a row of logits
LOGISTIC = "logistic"  # l(m) = -log sigmoid(m), m a scalar margin (BPR)
MULTILABEL_LOGISTIC = "multilabel_logistic"  # l(z) = mean_j BCE(sigmoid(z_j), y_j), z a row of logits
OUTPUT_LOSSES = (SOFTMAX_CROSS_ENTROPY, LOGISTIC, MULTILABEL_LOGISTIC)


def output_hessian_product(output_loss: str, outputs, weight) -> Callable:
    """u -> H_out u, H_out the Hessian of sum_i w_i l(outputs_i) / sum_i w_i w.r.t. the outputs.

    Closed forms, both positive semi-definite and independent of the targets:
    SOFTMAX_CROSS_ENTROPY, per row diag(p) - p p^T with p = softmax(z);
    LOGISTIC, per row sigmoid(m) (1 - sigmoid(m)); MULTILABEL_LOGISTIC (PyTorch's
    MultiLabelSoftMarginLoss, a mean over the row's n columns), per row
    diag(sigmoid(z) (1 - sigmoid(z))) / n. RecBole's BPR loss is -log(1e-10 +
    sigmoid(m)); the 1e-10 changes that curvature only where sigmoid(m) < 1e-5, where it would
    turn it (slightly) negative, so it is left out.
    """
    row_share = weight / jnp.maximum(jnp.sum(weight), 1e-12)
    if output_loss == SOFTMAX_CROSS_ENTROPY:
        p = jax.nn.softmax(outputs, axis=-1)
        return lambda u: row_share[:, None] * p * (u - jnp.sum(p * u, axis=-1, keepdims=True))
    if output_loss == LOGISTIC:
        s = jax.nn.sigmoid(outputs)
        return lambda u: row_share * s * (1.0 - s) * u
    if output_loss == MULTILABEL_LOGISTIC:
        s = jax.nn.sigmoid(outputs)
        return lambda u: row_share[:, None] * s * (1.0 - s) * u / outputs.shape[-1]
    raise ValueError(f"unknown output loss {output_loss!r}; known: {OUTPUT_LOSSES}")


def gauss_newton_operator(parts_fn: Callable, params, output_loss: str) -> Callable:
    """v -> G v at `params`, G = J^T H_out J + Hess(penalty) (module docstring).

    parts_fn(params) -> (outputs, row weights, penalty or None) describes the loss
    sum_i w_i l(outputs_i) / sum_i w_i + penalty(params), l named by `output_loss`. J v comes
    from one `jax.linearize` of the outputs (a forward pass per product), J^T u from its
    transpose; J is never materialised. The penalty (an L2 term) keeps its exact Hessian
    (`hvp_operator`). Needs forward mode: a loss with a `custom_vjp` has no Gauss-Newton
    product here (`curvature_operator` hands LightGCN's forward-mode twin in; SGL has no hook).
    """
    outputs, output_jvp, weight = jax.linearize(lambda p: parts_fn(p)[:2], params, has_aux=True)
    output_vjp = jax.linear_transpose(output_jvp, params)
    output_hessian = output_hessian_product(output_loss, outputs, weight)
    has_penalty = jax.eval_shape(lambda p: parts_fn(p)[2], params) is not None
    penalty_hvp = hvp_operator(lambda p: parts_fn(p)[2], params) if has_penalty else None

    def matvec(v):
        product = output_vjp(output_hessian(output_jvp(v)))[0]
        return product if penalty_hvp is None else jax.tree.map(jnp.add, product, penalty_hvp(v))

    return matvec


def sharded_gauss_newton_operator(parts_fn: Callable, params, batch, output_loss: str, n_devices: int) -> Callable:
    """`gauss_newton_operator` with the batch's rows split over `n_devices` (as `sharded_loss`).

    parts_fn(params, batch) as above, for a row-mean loss (its penalty a row mean too); the
    batch's row count a multiple of `n_devices`. Each device multiplies by its shard's G
    (normalised by the shard's weight W_d) scaled by W_d / W, and `psum` adds them. A shard's
    linearisation cannot outlive the `shard_map`, so each product linearises again: one more
    forward pass per product than unsharded.
    """
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("rows",))

    def shard_product(params, v, batch):
        shard_weight = jnp.sum(batch["weight"])
        share = shard_weight / jnp.maximum(jax.lax.psum(shard_weight, "rows"), 1e-12)
        local = gauss_newton_operator(lambda p: parts_fn(p, batch), params, output_loss)(v)
        return jax.lax.psum(tree_scale(share, local), "rows")

    product = jax.shard_map(shard_product, mesh=mesh, in_specs=(P(), P(), P("rows")), out_specs=P())
    return lambda v: product(params, v, batch)


CURVATURES = ("auto", "hessian", "gauss_newton")


def forward_mode_twin(model):
    """The model's variant that forward-mode differentiation can go through, where it has one
    (LightGCN: graph products without the custom VJP, `graph.propagate`), else the model: the
    curvature products then run forward-over-reverse and Gauss-Newton can linearise."""
    return model.forward_mode() if hasattr(model, "forward_mode") else model


def has_gauss_newton(model) -> bool:
    """Whether the model exposes its outputs for `gauss_newton_operator` (module docstring)."""
    return hasattr(model, "output_loss_parts") and getattr(model, "output_loss", None) in OUTPUT_LOSSES


def check_curvature(name: str, curvature: str, compat: str) -> None:
    """A method's `curvature` setting, checked where it is set (the model comes later)."""
    if curvature not in CURVATURES:
        raise ValueError(f"{name}: curvature must be one of {CURVATURES}, got {curvature!r}")
    if compat == "erase" and curvature == "gauss_newton":
        raise ValueError(f"{name}: compat='erase' reproduces the original's exact Hessian; curvature='gauss_newton' "
                         "needs compat='correct'")


def resolve_curvature(curvature: str, model, compat: str = "correct", default: str = "gauss_newton") -> str:
    """The curvature a Newton-type step uses: "hessian" or "gauss_newton".

    "auto" is Gauss-Newton wherever the model has the `output_loss_parts` hook (BPR, LightGCN
    through its forward-mode twin, the sequence models) and the exact Hessian elsewhere (SGL). Over all parameters the
    exact Hessian is indefinite: matrix factorisation's loss is bilinear in user and item rows,
    and on sequence models CG met negative curvature within 0-2 iterations, its truncated steps
    wrecking the model (SASRec, ml-100k Horror, CEU and IDEA: test Recall@20 0.146 -> 0.02).
    Gauss-Newton is positive semi-definite and gave retrain-like steps on BPR (RESULTS,
    "Gauss-Newton curvature on BPR"). A model that declares `prefers_gauss_newton` (the
    sequence models) always gets Gauss-Newton for "auto"; on the others `default="hessian"`
    keeps the exact Hessian for a method whose block is convex (SCIF's user rows: for fixed
    items the BPR loss is convex in a user's row, so its exact Hessian is PSD).
    compat="erase" always uses the exact Hessian, as the original.
    """
    if compat == "erase" or curvature == "hessian":
        return "hessian"
    if curvature == "auto":
        if not has_gauss_newton(model):
            return "hessian"
        return "gauss_newton" if getattr(model, "prefers_gauss_newton", False) else default
    if not has_gauss_newton(model):
        raise ValueError(f"curvature='gauss_newton' needs the model's output_loss_parts hook; {model.name} has none")
    return "gauss_newton"


def curvature_operator(curvature: str, model, context, batch, key, params, block: ParameterBlock | None = None):
    """v -> C v for the curvature C of model.loss(., context, batch, key) at `params`.

    C is the exact Hessian ("hessian", `hvp_operator`) or the generalised Gauss-Newton matrix
    ("gauss_newton"), of all parameters (`block` None; v shaped like `params`) or of the
    block's values (v shaped like `block.values(params)`). Rows are split over devices where
    the loss is a row mean (`data_parallel_loss`), for either curvature. A model that cuts large
    batches into row chunks (`chunked_rows`, the next-basket models) gets the chunked products
    of `chunked_curvature_operator` instead.
    """
    model = forward_mode_twin(model)
    values = params if block is None else block.values(params)
    with_values = (lambda v: v) if block is None else (lambda v: block.insert(params, v))
    chunks = model.chunked_rows(context, batch) if hasattr(model, "chunked_rows") else None
    if chunks is not None:
        return chunked_curvature_operator(curvature, model, context, chunks, key, values, with_values)
    if curvature == "hessian":
        loss = data_parallel_loss(model, context, key)
        return hvp_operator(lambda v: loss(with_values(v), batch), values)

    def parts(v, rows):
        return model.output_loss_parts(with_values(v), context, rows, key)

    n_devices = data_parallel_devices(model)
    if n_devices == 1:
        return gauss_newton_operator(lambda v: parts(v, batch), values, model.output_loss)
    return sharded_gauss_newton_operator(parts, values, pad_rows(batch, n_devices), model.output_loss, n_devices)


def chunked_curvature_operator(curvature: str, model, context, chunks, key, values, with_values) -> Callable:
    """v -> C v summed over a batch's row chunks (`erase_jax.models.nbr.row_chunks.RowChunks`).

    C is the curvature of the weighted-mean loss over all rows: each chunk's product is that of its
    own rows' weighted mean, weighted by the chunk's share of the weight. Each chunk is linearised
    inside the scan, per product (one forward pass more per product than `hvp_operator`'s single
    linearisation), so memory is one chunk's. Runs unsharded. The model gives `loss_at(params,
    context, rows, key, n_steps)` and, for Gauss-Newton, `output_loss_parts(..., n_steps)`.
    """
    total = jnp.maximum(jnp.sum(chunks.chunks["weight"]), 1e-12)

    def matvec(v):
        def chunk_product(rows, steps):
            if curvature == "hessian":
                loss = lambda u: model.loss_at(with_values(u), context, rows, key, steps)
                return hvp_operator(loss, values)(v)
            parts = lambda u: model.output_loss_parts(with_values(u), context, rows, key, steps)
            return gauss_newton_operator(parts, values, model.output_loss)(v)

        return tree_scale(1.0 / total, chunks.weighted_sum(chunk_product, values))

    return matvec


ORIGINAL_NEWTON_DAMPING = 0.01  # ceu_lambda, idea_damping: the original's default (compat="erase")


def newton_damping(setting: float | None, curvature: str, model, compat: str = "correct") -> float:
    """CEU's, IDEA's and GIF's (CG) damping of the removal Newton step: the user's `setting` when
    given, else the original's 0.01 in compat="erase", else the model's declared
    `newton_damping[curvature]` (each model family's measured default), else 0.01."""
    if setting is not None:
        return setting
    if compat == "erase":
        return ORIGINAL_NEWTON_DAMPING
    return getattr(model, "newton_damping", {}).get(curvature, ORIGINAL_NEWTON_DAMPING)
