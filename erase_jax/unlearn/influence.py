"""The influence core every influence method shares: HVPs, parameter blocks, solvers, sharding.

Influence-function unlearning (Koh & Liang, "Understanding Black-box Predictions via Influence
Functions", ICML 2017, eq. 1: I(z) = -H^-1 grad l(z)) needs x = (H + lambda I)^-1 g for the
Hessian H of a loss over some parameters. Nothing here materialises H:

* `hvp(loss_fn, params, v)` is one Hessian-vector product by forward-over-reverse
  differentiation (`jax.jvp` of `jax.grad`, Pearlmutter's trick; reverse-over-reverse where
  the loss has a `custom_vjp`); `hvp_operator` linearises once and then applies H many times
  (what a solver with a fixed operator wants).
* `gauss_newton_operator` is the generalised Gauss-Newton product G v = J^T H_out J v
  (Schraudolph, "Fast Curvature Matrix-Vector Products for Second-Order Gradient Descent",
  Neural Computation 2002; Martens, "Deep learning via Hessian-free optimization", ICML 2010):
  J the Jacobian of the model's outputs (logits, BPR margins) w.r.t. the parameters, H_out the
  closed-form Hessian of the loss w.r.t. those outputs (`output_hessian_product`), plus the
  exact Hessian of a regulariser. It drops the term sum_k (dl/dz_k) Hess z_k that makes the
  Hessian of a non-linear model indefinite, so G is positive semi-definite wherever the loss is
  convex in the outputs, and CG on G + lambda I is well-posed. A model opts in with the hook
  `output_loss_parts(params, context, batch, key) -> (outputs, row weights, penalty or None)`
  and a class attribute `output_loss` naming the loss of the outputs (`OUTPUT_LOSSES`):
  model.loss = sum_i w_i l(outputs_i) / sum_i w_i + penalty. `curvature_operator` picks the
  exact Hessian or G for a method (data-parallel like the loss; on the model's forward-mode
  twin where it has one, `forward_mode_twin`: LightGCN), `resolve_curvature` the default per
  model family, `resolve_damping` (SCIF) and `newton_damping` (CEU, IDEA, GIF) the dampings.
* `ParameterBlock` restricts a loss to some parameters: whole leaves (e.g. only the user
  embedding) or some ROWS of one leaf (e.g. the request's users), gathered as a small dense
  array and scattered back, so solvers work on a vector of the block's size.
* `cg_solve`, `richardson_solve`, `lissa_solve` solve (H + lambda I) x = g in one
  `lax.while_loop` each and report a `SolverInfo`; divergence (NaN/Inf, a residual grown far
  beyond the initial one, p^T A p <= 0 for CG) ends the loop with a status code instead of
  being applied silently; the caller decides what to do with it.
* `sharded_loss(loss_fn, n_devices)` evaluates a weighted-mean batch loss with the batch's
  rows split over local devices (`jax.shard_map` + `psum`); gradients and HVPs of it equal the
  single-device ones. `pad_rows` makes the row count a multiple of the device count.

Vectors are pytrees throughout (a block's values are a tuple of arrays). The solvers are pure
traceable functions: call them inside the caller's `jax.jit` (every influence method jits its
whole request), or on their own, where the `while_loop` is compiled as one computation.
"""

from __future__ import annotations

import enum
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.extend import core as jax_core
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

Path = tuple[str, ...]
USER_EMBEDDING: Path = ("params", "user_embedding", "embedding")


# ---------------------------------------------------------------------------------------------
# Hessian-vector products


def hvp(loss_fn: Callable, params, v):
    """H v for the Hessian H of the scalar `loss_fn` at `params` (any pytree).

    Forward-over-reverse (`jax.jvp` of `jax.grad`). A loss that forward mode cannot
    differentiate (a `jax.custom_vjp` inside, like the graph product of LightGCN and SGL) gets
    reverse-over-reverse instead, the VJP of the gradient, which equals H v as H is symmetric.
    """
    if supports_forward_mode(loss_fn, params):
        return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]
    return jax.vjp(jax.grad(loss_fn), params)[1](v)[0]


def hvp_operator(loss_fn: Callable, params) -> Callable:
    """v -> H v at fixed `params`: the gradient is linearised once, each product reuses it.

    `jax.linearize` of the gradient, or its `jax.vjp` where forward mode is unavailable (`hvp`).
    """
    if supports_forward_mode(loss_fn, params):
        return jax.linearize(jax.grad(loss_fn), params)[1]
    gradient_vjp = jax.vjp(jax.grad(loss_fn), params)[1]
    return lambda v: gradient_vjp(v)[0]


def supports_forward_mode(loss_fn: Callable, params) -> bool:
    """False when the loss contains a `jax.custom_vjp`, which forward mode cannot differentiate.

    JAX only reports that when lowering, too late to switch, so the loss's jaxpr is searched.
    """
    return not _contains_custom_vjp(jax.make_jaxpr(loss_fn)(params).jaxpr)


def _contains_custom_vjp(jaxpr) -> bool:
    """Whether a `custom_vjp_call` occurs in the jaxpr or in any jaxpr nested in its equations."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "custom_vjp_call":
            return True
        if any(_contains_custom_vjp(inner) for inner in jax_core.jaxprs_in_params(eqn.params)):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Parameter blocks


@struct.dataclass
class ParameterBlock:
    """Some leaves of a parameter pytree, each whole (`rows` None) or restricted to some rows.

    Row indices outside the leaf (e.g. `n_rows`, used as padding to keep shapes fixed) read as
    zeros and are never written, so a padded block behaves like the block of its real rows.
    Rows must be unique: `insert` then sets each row exactly once.
    """

    paths: tuple[Path, ...] = struct.field(pytree_node=False)
    rows: tuple[jax.Array | None, ...]

    def values(self, params) -> tuple[jax.Array, ...]:
        """The block's entries as a tuple of dense arrays, one per path."""
        return tuple(
            leaf if rows is None else leaf.at[rows].get(mode="fill", fill_value=0)
            for leaf, rows in zip(self._leaves(params), self.rows)
        )

    def insert(self, params, values):
        """`params` with the block's entries replaced by `values`."""
        for path, rows, leaf, value in zip(self.paths, self.rows, self._leaves(params), values):
            params = _replace_leaf(params, path, value if rows is None else leaf.at[rows].set(value, mode="drop"))
        return params

    def _leaves(self, params):
        return [_get_leaf(params, path) for path in self.paths]


def leaf_block(*paths: Path) -> ParameterBlock:
    """Whole leaves, e.g. `leaf_block(USER_EMBEDDING)`."""
    return ParameterBlock(tuple(tuple(p) for p in paths), (None,) * len(paths))


def rows_block(path: Path, rows) -> ParameterBlock:
    """Rows `rows` (unique; out-of-range entries are padding) of the leaf at `path`."""
    return ParameterBlock((tuple(path),), (jnp.asarray(rows, jnp.int32),))


def user_rows_block(rows) -> ParameterBlock:
    """The given rows of a CF model's user-embedding table."""
    return rows_block(USER_EMBEDDING, rows)


def all_leaves_block(params) -> ParameterBlock:
    """Every leaf of a parameter pytree of nested dicts and lists."""
    paths = [tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path)
             for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return leaf_block(*paths)


def loss_on_block(loss_fn: Callable, params, block: ParameterBlock) -> Callable:
    """block values -> loss_fn(params with the block replaced): the loss restricted to the block.

    Its gradient is the full gradient's block entries, its Hessian the block's principal
    submatrix of the full Hessian.
    """
    return lambda values: loss_fn(block.insert(params, values))


def apply_update(params, block: ParameterBlock, delta):
    """`params` with `delta` (shaped like `block.values(params)`) added to the block's entries."""
    for path, rows, value in zip(block.paths, block.rows, delta):
        leaf = _get_leaf(params, path)
        updated = leaf + value if rows is None else leaf.at[rows].add(value, mode="drop")
        params = _replace_leaf(params, path, updated)
    return params


def _get_leaf(tree, path: Path):
    for key in path:
        tree = tree[key]
    return tree


def _replace_leaf(tree, path: Path, value):
    if not path:
        return value
    replaced = _replace_leaf(tree[path[0]], path[1:], value)
    if isinstance(tree, list):
        return [replaced if i == path[0] else leaf for i, leaf in enumerate(tree)]
    return {**tree, path[0]: replaced}


# ---------------------------------------------------------------------------------------------
# Vector arithmetic on pytrees


def tree_vdot(a, b) -> jax.Array:
    return sum((jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), jnp.float32(0))


def tree_norm(a) -> jax.Array:
    return jnp.sqrt(tree_vdot(a, a))


def tree_axpy(alpha, x, y):
    """alpha * x + y."""
    return jax.tree.map(lambda xi, yi: alpha * xi + yi, x, y)


def tree_scale(alpha, x):
    return jax.tree.map(lambda xi: alpha * xi, x)


# ---------------------------------------------------------------------------------------------
# Solvers for (H + damping I) x = g


class SolverStatus(enum.IntEnum):
    """How a solve ended. Codes >= NONFINITE end the solve early: the caller decides about x."""

    CONVERGED = 0  # residual norm <= tolerance
    MAX_ITERATIONS = 1  # iteration limit reached (the normal end of a fixed-length recursion)
    NONFINITE = 2  # NaN or Inf appeared; x is the last finite iterate
    RESIDUAL_GROWTH = 3  # residual norm > divergence_factor * initial residual norm
    NOT_POSITIVE_DEFINITE = 4  # CG met p^T A p <= 0; x is the iterate before that step (truncated CG)


class SolverInfo(NamedTuple):
    iterations: jax.Array  # int32: operator applications that were taken
    residual_norm: jax.Array  # float32 ||g - A x|| of the returned x
    residual_history: jax.Array  # float32 [max_iter + 1]: entry k after k iterations, NaN beyond
    status: jax.Array  # int32 SolverStatus


def cg_solve(
    matvec: Callable,
    g,
    damping: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    atol: float = 0.0,
    divergence_factor: float = 1e3,
):
    """Conjugate gradients for (H + damping I) x = g, H = `matvec` symmetric; returns (x, SolverInfo).

    Hestenes & Stiefel (1952); Nocedal & Wright, Numerical Optimization, Algorithm 5.2. Starts
    at x = 0 and stops once ||r|| <= max(tol * ||g||, atol) (scipy's rule), after `max_iter`
    steps, or on divergence: p^T A p <= 0 (A not positive definite along p; the step is not
    taken), a non-finite value (not taken), or ||r|| > divergence_factor * ||g||.
    """
    operator = _damped(matvec, damping)
    g_norm = tree_norm(g)
    threshold = jnp.maximum(tol * g_norm, atol)
    history = jnp.full(max_iter + 1, jnp.nan, jnp.float32).at[0].set(g_norm)
    zero = tree_scale(0.0, g)
    initial_status = jnp.where(max_iter == 0, SolverStatus.MAX_ITERATIONS, _RUNNING)
    initial_status = jnp.where(g_norm <= threshold, SolverStatus.CONVERGED, initial_status)

    def body(state):
        x, r, p, rho, k, status, history = state
        q = operator(p)
        curvature = tree_vdot(p, q)
        alpha = rho / curvature
        x_next, r_next = tree_axpy(alpha, p, x), tree_axpy(-alpha, q, r)
        rho_next = tree_vdot(r_next, r_next)
        residual = jnp.sqrt(rho_next)
        status = _classify(residual, threshold, g_norm, divergence_factor, k + 1, max_iter)
        status = jnp.where(curvature <= 0, SolverStatus.NOT_POSITIVE_DEFINITE, status)
        status = jnp.where(jnp.isfinite(curvature) & jnp.isfinite(rho_next), status, SolverStatus.NONFINITE)
        taken = (status != SolverStatus.NOT_POSITIVE_DEFINITE) & (status != SolverStatus.NONFINITE)
        p_next = tree_axpy(rho_next / rho, p, r_next)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(taken, a, b), new, old)
        history = history.at[k + 1].set(jnp.where(taken, residual, jnp.nan))
        rho = jnp.where(taken, rho_next, rho)
        return keep(x_next, x), keep(r_next, r), keep(p_next, p), rho, k + taken, status, history

    state = (zero, g, g, g_norm**2, jnp.int32(0), initial_status, history)
    x, _, _, rho, k, status, history = jax.lax.while_loop(lambda s: s[5] == _RUNNING, body, state)
    return x, SolverInfo(k, jnp.sqrt(rho), history, status.astype(jnp.int32))


def richardson_solve(
    matvec: Callable,
    g,
    damping: float,
    step: float,
    iterations: int,
    x0=None,
    tol: float = 0.0,
    divergence_factor: float = 1e3,
):
    """Richardson iteration x <- x + step * (g - (H + damping I) x); returns (x, SolverInfo).

    The fixed-step recursion of the original's IDEA (step = 1 / damping there, on H alone):
    it converges iff 0 < step * eig(H + damping I) < 2 for every eigenvalue; otherwise the
    residual grows geometrically and the loop stops with RESIDUAL_GROWTH (or NONFINITE).
    Starts at x0 (default 0), runs `iterations` steps unless ||r|| <= tol * ||g|| first.
    """
    operator = _damped(matvec, damping)
    x = tree_scale(0.0, g) if x0 is None else x0
    g_norm = tree_norm(g)
    residual = jax.tree.map(jnp.subtract, g, operator(x))
    first_norm = tree_norm(residual)
    reference = jnp.maximum(g_norm, first_norm)
    threshold = tol * g_norm
    history = jnp.full(iterations + 1, jnp.nan, jnp.float32).at[0].set(first_norm)
    initial_status = jnp.where(iterations == 0, SolverStatus.MAX_ITERATIONS, _RUNNING)
    initial_status = jnp.where(first_norm <= threshold, SolverStatus.CONVERGED, initial_status)

    def body(state):
        x, r, r_norm, k, status, history = state
        x_next = tree_axpy(step, r, x)
        r_next = jax.tree.map(jnp.subtract, g, operator(x_next))
        r_next_norm = tree_norm(r_next)
        status = _classify(r_next_norm, threshold, reference, divergence_factor, k + 1, iterations)
        taken = status != SolverStatus.NONFINITE
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(taken, a, b), new, old)
        history = history.at[k + 1].set(jnp.where(taken, r_next_norm, jnp.nan))
        return keep(x_next, x), keep(r_next, r), jnp.where(taken, r_next_norm, r_norm), k + taken, status, history

    state = (x, residual, first_norm, jnp.int32(0), initial_status, history)
    x, _, r_norm, k, status, history = jax.lax.while_loop(lambda s: s[4] == _RUNNING, body, state)
    return x, SolverInfo(k, r_norm, history, status.astype(jnp.int32))


def lissa_solve(
    matvec: Callable, g, damping: float, scale: float, iterations: int, divergence_factor: float = 1e3
):
    """LiSSA / truncated Neumann series with the GIF paper's damping d and scale s.

    Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine Learning in
    Linear Time", JMLR 2017, as Koh & Liang (2017) and GIF (Wu et al., WWW 2023) use it:
    h_0 = g, h_t = g + (1 - d) h_{t-1} - H h_{t-1} / s, result x = h_T / s.
    Its fixed point solves (H + d s I) x = g, i.e. damping d * s in the notation of the other
    solvers, and it converges iff eig(H) / s + d lies in (0, 2) for every eigenvalue: s must
    exceed about half the largest eigenvalue of H. Here the full-batch form, written as the
    Richardson iteration it is: x_t = x_{t-1} + (g - (H + d s I) x_{t-1}) / s with x_0 = g / s.
    """
    x0 = tree_scale(1.0 / scale, g)
    return richardson_solve(
        matvec, g, damping * scale, 1.0 / scale, iterations, x0=x0, divergence_factor=divergence_factor
    )


_RUNNING = -1


def _damped(matvec: Callable, damping: float) -> Callable:
    return lambda v: tree_axpy(damping, v, matvec(v))


def _classify(residual, threshold, reference, divergence_factor, k, max_iter):
    """The status after iteration k from the new residual norm (RUNNING if none applies)."""
    status = jnp.where(k >= max_iter, SolverStatus.MAX_ITERATIONS, _RUNNING)
    status = jnp.where(residual <= threshold, SolverStatus.CONVERGED, status)
    status = jnp.where(residual > divergence_factor * reference, SolverStatus.RESIDUAL_GROWTH, status)
    return jnp.where(jnp.isfinite(residual), status, SolverStatus.NONFINITE)


# ---------------------------------------------------------------------------------------------
# Data-parallel losses


def pad_rows(batch: dict, multiple: int) -> dict:
    """The batch with weight-0 rows (index 0 everywhere) appended up to a multiple of `multiple`."""
    n = jax.tree.leaves(batch)[0].shape[0]
    extra = -n % multiple
    if extra == 0:
        return batch
    return jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros((extra, *a.shape[1:]), a.dtype)]), batch)


def sharded_loss(loss_fn: Callable, n_devices: int | None = None) -> Callable:
    """(params, batch) -> loss_fn(params, batch), with the batch's rows split over `n_devices`.

    `loss_fn` must be a weighted mean over the batch's rows, sum_i w_i l_i / max(sum_i w_i,
    1e-12) with w = batch["weight"] (BPR's and LightGCN's convention). Each device computes
    its shard's mean and weight; their weighted combination via `psum` is the same mean, and
    so are its gradient and HVP (autodiff transposes `psum`). Parameters are replicated. The
    batch's row count must be a multiple of `n_devices` (see `pad_rows`). With one device this
    returns `loss_fn` itself. A loss that is not a row-separable mean is not preserved
    (LightGCN's regulariser takes the norm of the whole batch; SGL sums over the batch).
    """
    n_devices = jax.local_device_count() if n_devices is None else n_devices
    if n_devices == 1:
        return loss_fn
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("rows",))

    def shard_loss(params, batch):
        shard_weight = jnp.sum(batch["weight"])
        total = jax.lax.psum(loss_fn(params, batch) * shard_weight, "rows")
        return total / jnp.maximum(jax.lax.psum(shard_weight, "rows"), 1e-12)

    return jax.shard_map(shard_loss, mesh=mesh, in_specs=(P(), P("rows")), out_specs=P())



_DATA_PARALLEL_DEVICES: int | None = None


def set_data_parallel_devices(n_devices: int | None) -> None:
    """Caps the devices `data_parallel_loss` uses (None: all local devices). Functions already
    compiled keep their split until `jax.clear_caches()`."""
    global _DATA_PARALLEL_DEVICES
    _DATA_PARALLEL_DEVICES = n_devices


def loss_is_row_mean(model) -> bool:
    """Whether `model.loss` is a weighted mean of per-row terms (what `sharded_loss` preserves).

    A model says so with a `loss_is_row_mean` attribute (BPR and LightGCN decide it from their
    regulariser: the squared form is per row, the norm form is not); others are assumed not to.
    """
    return bool(getattr(model, "loss_is_row_mean", False))


def data_parallel_loss(model, context, key, n_devices: int | None = None) -> Callable:
    """(params, batch) -> model.loss(params, context, batch, key), data-parallel where exact.

    With several local devices and a row-mean loss, the batch's rows are split over the
    devices (`sharded_loss`, padded with weight-0 rows to a multiple of the device count), so
    every gradient and HVP of it sums over the devices' shards; otherwise the plain loss. The
    result is the same function either way (to float32 rounding), so methods call this
    unconditionally and run unchanged on one device.
    """
    def plain(params, batch):
        return model.loss(params, context, batch, key)

    n_devices = data_parallel_devices(model, n_devices)
    if n_devices == 1:
        return plain
    sharded = sharded_loss(plain, n_devices)
    return lambda params, batch: sharded(params, pad_rows(batch, n_devices))


def data_parallel_devices(model, n_devices: int | None = None) -> int:
    """How many devices `model`'s batches are split over: 1 unless its loss is a row mean."""
    if not loss_is_row_mean(model):
        return 1
    return n_devices or _DATA_PARALLEL_DEVICES or jax.local_device_count()


# ---------------------------------------------------------------------------------------------
# Curvature of an influence step: exact Hessian or generalised Gauss-Newton


SOFTMAX_CROSS_ENTROPY = "softmax_cross_entropy"  # l(z) = -log softmax(z)[target], z a row of logits
LOGISTIC = "logistic"  # l(m) = -log sigmoid(m), m a scalar margin (BPR)
OUTPUT_LOSSES = (SOFTMAX_CROSS_ENTROPY, LOGISTIC)


def output_hessian_product(output_loss: str, outputs, weight) -> Callable:
    """u -> H_out u, H_out the Hessian of sum_i w_i l(outputs_i) / sum_i w_i w.r.t. the outputs.

    Closed forms, both positive semi-definite and independent of the targets:
    SOFTMAX_CROSS_ENTROPY, per row diag(p) - p p^T with p = softmax(z);
    LOGISTIC, per row sigmoid(m) (1 - sigmoid(m)). RecBole's BPR loss is -log(1e-10 +
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


def model_family(model) -> str:
    """"CF", "SBR" or "NBR" (a model without a `task` is taken for CF)."""
    return getattr(model, "task", "CF")


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


def resolve_curvature(curvature: str, model, compat: str = "correct", cf_auto: str = "gauss_newton") -> str:
    """The curvature a Newton-type step uses: "hessian" or "gauss_newton".

    "auto" is Gauss-Newton wherever the model has the `output_loss_parts` hook (BPR, LightGCN
    through its forward-mode twin, the sequence models) and the exact Hessian elsewhere (SGL). Over all parameters the
    exact Hessian is indefinite: matrix factorisation's loss is bilinear in user and item rows,
    and on sequence models CG met negative curvature within 0-2 iterations, its truncated steps
    wrecking the model (SASRec, ml-100k Horror, CEU and IDEA: test Recall@20 0.146 -> 0.02).
    Gauss-Newton is positive semi-definite and gave retrain-like steps on BPR (RESULTS,
    "Gauss-Newton curvature on BPR"). `cf_auto="hessian"` keeps the exact Hessian on CF models
    for a method whose CF block is convex (SCIF's user rows: for fixed items the BPR loss is
    convex in a user's row, so its exact Hessian is PSD). compat="erase" always uses the exact
    Hessian, as the original.
    """
    if compat == "erase" or curvature == "hessian":
        return "hessian"
    if curvature == "auto":
        if not has_gauss_newton(model):
            return "hessian"
        return "gauss_newton" if model_family(model) == "SBR" else cf_auto
    if not has_gauss_newton(model):
        raise ValueError(f"curvature='gauss_newton' needs the model's output_loss_parts hook; {model.name} has none")
    return "gauss_newton"


def curvature_operator(curvature: str, model, context, batch, key, params, block: ParameterBlock | None = None):
    """v -> C v for the curvature C of model.loss(., context, batch, key) at `params`.

    C is the exact Hessian ("hessian", `hvp_operator`) or the generalised Gauss-Newton matrix
    ("gauss_newton"), of all parameters (`block` None; v shaped like `params`) or of the
    block's values (v shaped like `block.values(params)`). Rows are split over devices where
    the loss is a row mean (`data_parallel_loss`), for either curvature.
    """
    model = forward_mode_twin(model)
    values = params if block is None else block.values(params)
    with_values = (lambda v: v) if block is None else (lambda v: block.insert(params, v))
    if curvature == "hessian":
        loss = data_parallel_loss(model, context, key)
        return hvp_operator(lambda v: loss(with_values(v), batch), values)

    def parts(v, rows):
        return model.output_loss_parts(with_values(v), context, rows, key)

    n_devices = data_parallel_devices(model)
    if n_devices == 1:
        return gauss_newton_operator(lambda v: parts(v, batch), values, model.output_loss)
    return sharded_gauss_newton_operator(parts, values, pad_rows(batch, n_devices), model.output_loss, n_devices)


SEQUENCE_CORRECT_DAMPING = 1.0
# A method's default damping where its general default does not fit a model family (measured):
# SCIF's correct mode on sequence models, whose block (item embedding and output layers) has a
# strongly indefinite exact Hessian. With 1e-4 or 0.01 CG met negative curvature within 0-2
# iterations and the truncated steps reached norms of 10-114 (SASRec, ml-100k Horror, 30
# requests: test Recall@20 0.146 -> 0.021 with 0.01); with 1.0 it converges in 4-12 iterations
# (steps 0.05-0.3) and keeps 0.145.
FAMILY_DAMPING: dict[tuple[str, str, str], float] = {("scif", "correct", "SBR"): SEQUENCE_CORRECT_DAMPING}


ORIGINAL_NEWTON_DAMPING = 0.01  # ceu_lambda, idea_damping: the original's default (compat="erase")
# The damping of the correct modes' removal Newton step (`gif.removal_newton_system`: the mean
# loss over the whole kept data) per (model family, curvature), where the user sets none.
# Measured (benchmarks/RESULTS.md, "The removal Newton step over the whole data"):
# * CF, Gauss-Newton, 1e-4: ml-100k BPR Horror, 98 requests, CEU without noise: 32.7 % of the
#   unlearned users with a Horror item in the top 20 (retrain 34.7, original 45.9) at test
#   Recall@20 0.193 (original 0.1934). With CEU's noise (sigma 0.1): 1e-3 -> 53 % (too short a
#   step), 1e-4 -> 41.8 %, 1e-5 -> CG stops at 100 iterations unconverged, Recall@20 0.144.
# * SBR, Gauss-Newton, 1e-2: SASRec, ml-100k Horror, 30 requests, GIF (no noise): 1e-4 -> CG
#   unconverged on every request, Recall@20 0.146 -> 0.033; 1e-3 -> 0.1427, forgotten items'
#   hit@20 0.187 -> 0.056 (past the retrain's 0.131); 1e-2 -> 0.1453, hit@20 0.159, the closest
#   to the retrain; 1.0 -> no change at all.
# * the exact Hessian is indefinite over all parameters: the original's 0.01 (smaller dampings
#   met negative curvature within 3 CG iterations on LightGCN and wrecked BPR).
NEWTON_DAMPING = {
    ("CF", "gauss_newton"): 1e-4,
    ("SBR", "gauss_newton"): 1e-2,
    ("CF", "hessian"): ORIGINAL_NEWTON_DAMPING,
    ("SBR", "hessian"): ORIGINAL_NEWTON_DAMPING,
}


def newton_damping(setting: float | None, curvature: str, model, compat: str = "correct") -> float:
    """CEU's, IDEA's and GIF's (CG) damping: the user's `setting` when given, else the original's
    0.01 in compat="erase" and `NEWTON_DAMPING[(model family, curvature)]` in "correct"."""
    if setting is not None:
        return setting
    if compat == "erase":
        return ORIGINAL_NEWTON_DAMPING
    return NEWTON_DAMPING.get((model_family(model), curvature), ORIGINAL_NEWTON_DAMPING)


def resolve_damping(method: str, compat: str, setting: float | None, default: float, model) -> float:
    """The damping a method uses: the user's `setting` when given (not None), else the method's
    default for the model's family (`FAMILY_DAMPING`), else its general `default`."""
    if setting is not None:
        return setting
    return FAMILY_DAMPING.get((method, compat, model_family(model)), default)
