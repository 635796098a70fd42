"""GIF: a graph influence-function update of all parameters, then fine-tuning on retain data.

Wu, Yang, Qian, Sui, Wang, He, "GIF: A General Graph Unlearning Strategy via Influence
Function", WWW 2023 (arXiv 2304.02835). Deleting edges dG changes the loss terms of the deleted
edges AND, through message passing, the losses of their neighbourhood N, so the parameter change
is (GIF eq. 8)

    d_theta = H^-1 ( grad L_dG(G) + grad L_N(G) - grad L_N(G \\ dG) ),

with H^-1 v computed by LiSSA, h_t = v + (1 - d) h_{t-1} - H h_{t-1} / s, d_theta = h_T / s
(`influence.lissa_solve`). ERASE (unlearning-algorithms spec 6.5, detail spec section 5) applies
it to one request (F = all training rows of the request's users, C = F without the forgotten
rows, R = sampled retain rows), then fine-tunes on R with the persistent Adam.

Two modes (`compat`):

* "correct" (default): the paper's update, as the Newton step of the mean loss over the n
  training rows kept after the request (`removal_newton_system`; R's terms weighted by
  w = (n - |C|) / |R|, so R stands for the rows not in view),

      g = ( sum_F grad l(before) - sum_C grad l(after) + w sum_R [grad l(before) - grad l(after)] ) / n
      H = curvature of (sum_C l(after) + w sum_R l(after)) / n on `context_after`
      theta <- theta + x,   (H + gif_cg_damping I) x = g   (CG, `gif_solver="cg"`, the default)
                            or x = h_T / s  (the paper code's LiSSA, d = gif_damping, s = gif_scale_factor).
 The first two terms are the paper's grad L_dG plus u's own kept
  edges seen through the changed graph (sum_F grad l(before) - sum_C grad l(after) =
  sum_{F\\C} grad l(before) + sum_C [grad l(before) - grad l(after)]); R plays the neighbourhood
  N. With d = 0 and an exact optimum this is the Newton step -H^-1 grad L_after, which for a
  quadratic loss is the retrained optimum; LiSSA's d s = 10 is the paper code's strong damping
  (a no-op at this loss scale, see `gif_solver`). The forget rows are the request's F minus C (the runner's retrained model keeps C),
  unlike the original, which removes all of F's edges. The neighbourhood is all of R: the
  original's k-hop filter, topped up with other retain rows to U rows, returns (nearly) all of
  R for the runner's retain sample of U rows, so `gif_k_hops` has no effect (kept for
  configuration compatibility).
* "erase": the original's arithmetic (detail spec section 5): delta = g_F + g_orig - g_rem
  with g_F = sum of F's 256-row batch means / |F|, g_orig and g_rem = sums of R's batch means /
  number of batches on the graph before / after; H v = average of batch-mean HVPs over the first
  min(|R|, 1024) rows of R (graph before); recursion h_0 = delta, h_t = delta + h_{t-1} -
  (d/s) H h_{t-1} for gif_iterations steps and theta <- theta + h_T, **without the final
  division by s** (quirk Q-GIF-3: h_T is about (T+1) delta). Deliberate deviation: g_rem uses
  `context_after` (the graph without the request), not the original's sampled retain subgraph
  with its spurious user k <-> item k edges (Q-GIF-4).

Curvature (`curvature`, "correct" mode): H above is the exact Hessian of the kept rows' mean loss
("hessian", what the paper and the original use) or its generalised Gauss-Newton matrix
J^T H_out J ("gauss_newton", `influence.gauss_newton_operator`). The default "auto" takes Gauss-Newton wherever the model
has the hook (BPR, LightGCN, the sequence models) and the exact Hessian elsewhere (SGL):
`influence.resolve_curvature`.
The exact Hessian over all parameters is indefinite (SASRec, ml-100k Horror, 30 requests, LiSSA:
test Recall@20 0.146 -> 0.111 with it). "erase" always uses the exact Hessian.

Both modes: `max_norm` clips ||step||; a non-finite step, ||step|| < 1e-15, or a solver status
NONFINITE / RESIDUAL_GROWTH skips the update AND the fine-tuning (the original returns early), and
`skipped` is recorded. Then, by default only in "erase" (`fine_tunes`), fine-tuning: E =
1 + U // |R| epochs, each a fresh shuffled pass over R in batches of 256 capped at U =
gif_retain_samples (None: 16 |F|) rows, one Adam step (lr = learning_rate, the config lr) per
batch on `context_after`; Adam's moments are the method state and persist across requests, as
in the original.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from erase_jax.unlearn.influence.curvature import (
    check_curvature,
    curvature_operator,
    newton_damping,
    resolve_curvature,
)
from erase_jax.unlearn.influence.hvp import hvp
from erase_jax.unlearn.influence.sharding import data_parallel_loss, pad_rows
from erase_jax.unlearn.influence.solvers import (
    SolverStatus,
    cg_solve,
    lissa_solve,
    richardson_solve,
)
from erase_jax.unlearn.influence.trees import tree_axpy, tree_norm, tree_scale
from erase_jax.unlearn.methods.base import Batch, RequestData, register

COMPAT_MODES = ("correct", "erase")
CG_TOLERANCE = 1e-6  # relative, as CEU's and IDEA's correct modes
ERASE_BATCH = 256  # the original's loader batch size for F, C and R
MIN_STEP_NORM = 1e-15  # the original's "negligible update" threshold


@register
@dataclasses.dataclass(frozen=True)
class GIF:
    """GIF with the original's hyperparameter names and defaults (see the module docstring).

    gif_damping: d (`--gif_damping`). gif_scale_factor: s (`--gif_scale_factor`).
    gif_iterations: T (`--gif_iterations`). gif_k_hops: accepted, no effect (module docstring).
    gif_retain_samples: U, fine-tuning rows per epoch (None: 16 |F|, the original's default).
    gif_hessian_samples: Hessian rows in "erase" (1024, hard-coded in the original).
    retain_samples_used_for_update: the retain budget rule's T (`GIF.retain_budget`).
    learning_rate: fine-tuning Adam lr (the config's `learning_rate`).
    retain_finetune: whether the retain fine-tuning runs (None: `fine_tunes`, i.e. not in
      "correct", as the GIF paper, and in "erase", as the original).
    max_norm: clip of ||step|| (`--max_norm`; None = no clip). compat: "correct" or "erase".
    gif_solver: how H^-1 g is computed in "correct" mode: "cg" (default: (H + gif_cg_damping I)
      x = g to a relative tolerance, at most gif_iterations steps) or "lissa" (the paper code's
      recursion with gif_damping and gif_scale_factor, whose fixed point is (H + d s I)^-1 g:
      d s = 10 at the paper's defaults, about 10^4 times the curvature of a user's block in the
      mean loss over the data, so it is a gradient step of about g / 10 that leaves the model
      where it was (ml-100k BPR Horror, 98 requests: Horror exposure 45.9 % before and after).
      "erase" always runs the original's recursion.
    gif_cg_damping: lambda of the "cg" solver (None: `influence.newton_damping`, by model family
      and curvature; the exact Hessian, indefinite over all parameters, keeps 0.01: with 1e-4 it
      wrecked BPR, test Recall@20 0.19 -> 0.03).
    curvature: "auto" (default), "hessian" or "gauss_newton" (module docstring; "correct" only).
    """

    name: ClassVar[str] = "gif"

    gif_damping: float = 0.01
    gif_scale_factor: float = 1000.0
    gif_iterations: int = 100
    gif_k_hops: int = 2
    gif_retain_samples: int | None = None
    gif_hessian_samples: int = 1024
    retain_samples_used_for_update: int = 128
    learning_rate: float = 1e-3
    retain_finetune: bool | None = None
    max_norm: float | None = None
    compat: str = "correct"
    gif_solver: str | None = None
    gif_cg_damping: float | None = None
    curvature: str = "auto"

    def __post_init__(self):
        check_compat(self.name, self.compat)
        check_curvature(self.name, self.curvature, self.compat)
        if self.gif_solver not in (None, "lissa", "cg"):
            raise ValueError(f"gif: gif_solver must be 'lissa', 'cg' or None, got {self.gif_solver!r}")
        if self.compat == "erase" and self.gif_solver == "cg":
            raise ValueError("gif: compat='erase' reproduces the original's recursion; gif_solver='cg' needs compat='correct'")
        if self.compat == "erase" and self.gif_damping <= 0:
            raise ValueError("gif: compat='erase' needs gif_damping > 0 (its recursion divides by d / s)")

    @property
    def solver(self) -> str:
        """The solver in use in "correct" mode: `gif_solver`, else "cg"."""
        return self.gif_solver or "cg"

    def retain_budget(self, n_forget_rows: int) -> int:
        # the original's rule; its batch (B > 1) branch floors at 1024 instead of 32
        return max(self.retain_samples_used_for_update, 32)

    def init(self, model, params):
        return optax.adam(self.learning_rate).init(params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        cap = self.gif_retain_samples if self.gif_retain_samples is not None else 16 * request.n_forget_rows
        epochs = finetune_epochs(cap, request.retain) if fine_tunes(self) else 0
        batches = (request.forget, request.clean, request.retain)
        contexts = (request.context_before, request.context_after)
        return _gif_request(self, model, epochs, params, state, contexts, batches, training_rows(request), jnp.float32(cap), key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _gif_request(method: GIF, model, epochs, params, opt_state, contexts, batches, n_train, cap, key):
    forget, clean, retain = batches
    before, after = contexts
    loss_key, finetune_key = jax.random.split(key)
    if method.compat == "correct":
        curvature = resolve_curvature(method.curvature, model)
        g, matvec = removal_newton_system(model, params, contexts, batches, loss_key, curvature, n_train)
        if method.solver == "cg":
            damping = newton_damping(method.gif_cg_damping, curvature, model)
            x, info = cg_solve(matvec, g, damping, CG_TOLERANCE, method.gif_iterations)
        else:
            x, info = lissa_solve(matvec, g, method.gif_damping, method.gif_scale_factor, method.gif_iterations)
    else:
        n_forget = jnp.maximum(jnp.sum(forget["weight"] > 0), 1)
        g_forget = tree_scale(1.0 / n_forget, grad_of_batch_means(model, params, before, forget, loss_key))
        g_orig = grad_of_batch_means(model, params, before, retain, loss_key, average=True)
        g_rem = grad_of_batch_means(model, params, after, retain, loss_key, average=True)
        delta = tree_axpy(-1.0, g_rem, tree_axpy(1.0, g_orig, g_forget))
        ratio = method.gif_damping / method.gif_scale_factor
        matvec = batch_mean_hvp(model, params, before, first_rows(retain, method.gif_hessian_samples), loss_key)
        # h <- delta + h - ratio H h  ==  Richardson on (H) x = delta / ratio with step ratio, x_0 = delta
        x, info = richardson_solve(matvec, tree_scale(1.0 / ratio, delta), 0.0, ratio, method.gif_iterations, x0=delta)
    params, skipped, diagnostics = apply_step(params, x, 1.0, method.max_norm, info)
    tuned, new_state, finetune_loss = finetune(
        model, params, opt_state, after, retain, cap, epochs, method, finetune_key
    )
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(skipped, b, a), new, old)
    diagnostics["finetune_loss"] = jnp.where(skipped, 0.0, finetune_loss)
    return keep(tuned, params), keep(new_state, opt_state), diagnostics


# ---------------------------------------------------------------------------------------------
# Pieces shared with CEU and IDEA (they import them from here)


def check_compat(name: str, compat: str) -> None:
    if compat not in COMPAT_MODES:
        raise ValueError(f"{name}: compat must be one of {COMPAT_MODES}, got {compat!r}")


def _zero_batch_like(batch: Batch) -> Batch:
    return {**batch, "weight": jnp.zeros_like(batch["weight"])}


def training_rows(request: RequestData) -> jax.Array:
    """The training set's size after the request (float32; 0 when the caller did not say)."""
    return jnp.float32(request.n_train_rows or 0)


def removal_newton_system(model, params, contexts, batches, key, curvature: str = "hessian", n_train=0.0):
    """(g, v -> H v): the right-hand side and operator of the correct modes' Newton system.

    The objective is the mean loss over the n training rows kept after the request (n =
    `n_train`, `RequestData.n_train_rows`). Its Newton step from the trained parameters is
    (H + 0 I)^-1 g with

        g = ( sum_F grad l(before) - sum_C grad l(after) + w sum_R [grad l(before) - grad l(after)] ) / n
        H = curvature of ( sum_C l(after) + w sum_R l(after) ) / n,   w = (n - |C|) / |R|,

    assuming grad L_before = 0 at the trained parameters (the influence-function premise). The
    request's own kept rows C are all there; the retain sample R stands for the other n - |C|
    rows, so its terms are weighted by w: H is then an unbiased estimate of the kept data's
    mean curvature, and the forgotten rows' gradient is divided by n, the data's size, not the
    sample's. (Dividing by the sample size |C| + |R| instead, as this function did before,
    leaves the step of the request's own users unchanged when the damping is 0, since their
    rows are all in C, but makes the step of every item 70x too long on ml-100k, n / (|C| + |R|),
    and it grew as the retain budget shrank.) `n_train` 0 means "the sample is the data":
    n = |C| + |R|, w = 1. `curvature` is "hessian" or "gauss_newton"
    (`influence.curvature_operator`); everything is over all parameters. `model.loss` must be
    a weighted mean.
    """
    before, after = contexts
    forget, clean, retain = batches
    clean = _zero_batch_like(forget) if clean is None else clean
    n = lambda b: jnp.sum(b["weight"])
    n_sample = jnp.maximum(n(clean) + n(retain), 1.0)
    n_total = jnp.where(n_train > 0, jnp.maximum(n_train, n_sample), n_sample)
    retain_weight = jnp.where(n(retain) > 0, (n_total - n(clean)) / jnp.maximum(n(retain), 1.0), 1.0)
    weighted_retain = {**retain, "weight": retain["weight"] * retain_weight}
    kept = {k: jnp.concatenate([clean[k], weighted_retain[k]]) for k in retain}

    loss_before = data_parallel_loss(model, before, key)  # rows split over local devices
    loss_after = data_parallel_loss(model, after, key)

    def signed_sum(p):
        total = n(forget) * loss_before(p, forget) - n(clean) * loss_after(p, clean)
        return total + retain_weight * n(retain) * (loss_before(p, retain) - loss_after(p, retain))

    g = tree_scale(1.0 / n_total, jax.grad(signed_sum)(params))
    return g, curvature_operator(curvature, model, after, kept, key, params)


def chunks(batch: Batch, size: int = ERASE_BATCH) -> Batch:
    """Consecutive loader batches of `size` rows, stacked: leaves [n_chunks, size, ...]."""
    return jax.tree.map(lambda a: a.reshape(-1, size, *a.shape[1:]), pad_rows(batch, size))


def grad_of_batch_means(model, params, context, batch: Batch, key, average: bool = False):
    """sum over the batch's 256-row loader batches of grad mean loss (divided by their number if
    `average`; the original's n_K is at least 1). Empty chunks contribute 0."""
    stacked = chunks(batch)
    n_chunks = jnp.maximum(jnp.sum(jnp.any(stacked["weight"] > 0, axis=1)), 1)

    def total(p):
        return jnp.sum(jax.vmap(lambda chunk: model.loss(p, context, chunk, key))(stacked))

    g = jax.grad(total)(params)
    return tree_scale(1.0 / n_chunks, g) if average else g


def first_rows(batch: Batch, n_rows: int) -> Batch:
    """The batch with only its first `n_rows` real rows kept (weight 0 on the rest)."""
    real = batch["weight"] > 0
    return {**batch, "weight": jnp.where(real & (jnp.cumsum(real) <= n_rows), batch["weight"], 0.0)}


def batch_mean_hvp(model, params, context, batch: Batch, key):
    """v -> the average over non-empty 256-row batches of the batch-mean loss's HVP (original)."""
    stacked = chunks(batch)
    nonempty = jnp.any(stacked["weight"] > 0, axis=1)
    n_chunks = jnp.maximum(jnp.sum(nonempty), 1)

    def total(p):
        losses = jax.vmap(lambda chunk: model.loss(p, context, chunk, key))(stacked)
        return jnp.sum(jnp.where(nonempty, losses, 0.0))

    return lambda v: tree_scale(1.0 / n_chunks, hvp(total, params, v))


def apply_step(params, step, sign, max_norm, info, noise=None):
    """params + sign * clip(step) (+ noise); skipped (no change) when unusable. Returns
    (params, skipped, diagnostics)."""
    step_norm = tree_norm(step)
    if max_norm is not None:
        step = tree_scale(jnp.minimum(1.0, max_norm / (step_norm + 1e-6)), step)
    skipped = ~jnp.isfinite(step_norm) | (step_norm < MIN_STEP_NORM)
    skipped = skipped | (info.status == SolverStatus.NONFINITE) | (info.status == SolverStatus.RESIDUAL_GROWTH)
    delta = tree_scale(sign, step) if noise is None else tree_axpy(sign, step, noise)
    delta = jax.tree.map(lambda d: jnp.where(skipped, 0.0, d), delta)
    diagnostics = {
        "solver_iterations": info.iterations,
        "solver_residual": info.residual_norm,
        "solver_status": info.status,
        "solution_norm": step_norm,
        "update_norm": tree_norm(delta),
        "skipped": skipped,
    }
    return jax.tree.map(jnp.add, params, delta), skipped, diagnostics


NOISE_MODES = ("release", "accumulate")
NOISE_STREAM = 0x6E6F  # fold_in tag of the released-noise key (independent of the step's keys)


def check_noise_mode(name: str, noise_mode: str | None) -> None:
    if noise_mode is not None and noise_mode not in NOISE_MODES:
        raise ValueError(f"{name}: noise_mode must be one of {NOISE_MODES} or None, got {noise_mode!r}")


def resolved_noise_mode(method) -> str:
    """CEU / IDEA: "release" (noise on the released copy only) or "accumulate" (the original)."""
    if method.noise_mode is not None:
        return method.noise_mode
    return "release" if method.compat == "correct" else "accumulate"


def noiseless_init(noise_mode: str, params):
    """The method state of a noise-adding method: the noiseless parameters ("release")."""
    return jax.tree.map(jnp.array, params) if noise_mode == "release" else ()


@jax.jit
def release_with_noise(params, scale, key):
    return jax.tree.map(jnp.add, params, gaussian_noise(key, params, scale))


def gaussian_noise(key, params, scale):
    """scale * N(0, I) shaped like `params` (independent per leaf)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def fine_tunes(method) -> bool:
    """Whether GIF's or IDEA's retain fine-tuning runs: `method.retain_finetune` when set, else
    only in compat="erase".

    The GIF and IDEA papers stop at the influence step (plus noise for IDEA); the fine-tuning on
    retain rows after every request is ERASE's addition, so the correct modes leave it out by
    default. It also works against the removal on CF models: the retain rows are whole users
    other than those unlearned so far, so the persistent Adam moves the item embeddings while
    the unlearned users' embeddings stay put, and their rankings drift towards chance (ml-100k
    BPR Horror, IDEA with Gauss-Newton at damping 0.003, 98 requests: 32.7 % of the unlearned
    users with a Horror item in the top 20 without it, 62.2 % with it, about what SEIF's
    destroyed model shows, 64.3 %; original 45.9 %; starting Adam from the trained optimiser state instead
    of fresh: 61.2 %; benchmarks/RESULTS.md).
    """
    if method.retain_finetune is not None:
        return bool(method.retain_finetune)
    return method.compat == "erase"


def finetune_epochs(cap: int, retain: Batch) -> int:
    """E = 1 + U // |R| (host side; passed traced, so it does not trigger compilation)."""
    n_retain = int(np.sum(np.asarray(retain["weight"]) > 0))
    return 1 + cap // max(n_retain, 1)


def _shuffled(batch: Batch, key) -> Batch:
    priority = jnp.where(batch["weight"] > 0, jax.random.uniform(key, batch["weight"].shape), 2.0)
    return jax.tree.map(lambda a: a[jnp.argsort(priority)], batch)


def finetune(model, params, opt_state, context, retain: Batch, cap, epochs, method, key):
    """`epochs` shuffled passes over R in 256-row batches, each pass capped at `cap` rows, one
    Adam step per non-empty batch (the original's `_train_epoch_efficient_shuffle`).
    Returns (params, opt_state, mean loss of the batches stepped on).

    `epochs` may be traced: the passes run in a `fori_loop`, so a stream whose requests need
    different numbers of passes (E = 1 + U // |R| varies with |F| and |R|) compiles once.
    """
    optimizer = optax.adam(method.learning_rate)

    def step(carry, inputs):
        p, s, total, count = carry
        chunk, step_key = inputs
        loss, grads = jax.value_and_grad(lambda q: model.loss(q, context, chunk, step_key))(p)
        updates, s_new = optimizer.update(grads, s, p)
        use = jnp.any(chunk["weight"] > 0)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(use, a, b), new, old)
        return (keep(optax.apply_updates(p, updates), p), keep(s_new, s), total + use * loss, count + use), None

    def one_pass(epoch, carry):
        pass_key = jax.random.fold_in(key, epoch)
        stacked = chunks(first_rows(_shuffled(retain, pass_key), cap))  # [n_chunks, 256, ...]
        step_keys = jax.random.split(jax.random.fold_in(pass_key, 1), stacked["weight"].shape[0])
        carry, _ = jax.lax.scan(step, carry, (stacked, step_keys))
        return carry

    params, opt_state, total, count = jax.lax.fori_loop(
        0, epochs, one_pass, (params, opt_state, jnp.float32(0), jnp.float32(0))
    )
    return params, opt_state, total / jnp.maximum(count, 1.0)
