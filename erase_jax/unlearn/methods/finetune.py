"""Fine-tuning on retain rows, as the original's trainer runs it after (or as) an unlearning step.

Two loops, because the original runs two:

* `retain_epoch` / `retain_epochs` (Kookmin, Fanchuan, SEIF): the trainer's persistent
  torch Adam (`adam_init` / `adam_step`, one step count per tensor, so that one tensor's state
  can be reset exactly), an optional gradient transform and norm clip, one `lax.scan` over the
  loader batches of a fresh shuffle capped at `cap` rows.
* `retain_passes` (GIF, IDEA): `optax.adam` whose state is the method state, E = 1 + U // |R|
  passes (`finetune_epochs`), by default only in compat="erase" (`fine_tunes`).

Both take one Adam step per loader batch of 256 rows and none on a batch without real rows.
`path_name` names a parameter tensor the way the original's name tests see it (Kookmin's
re-initialisation draw, SEIF's noised tensors).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from erase_jax.unlearn.methods.base import Batch
from erase_jax.unlearn.methods.batches import keep_first, loader_batches, real_rows, shuffle_rows

# ---------------------------------------------------------------------------------------------
# torch Adam and the trainer's retain epoch (Kookmin, Fanchuan, SEIF)


class AdamState(NamedTuple):
    """torch.optim.Adam state, one step count per tensor (leaves mirror the params)."""

    count: dict
    mu: dict
    nu: dict


def adam_init(params) -> AdamState:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return AdamState(jax.tree.map(lambda p: jnp.zeros((), jnp.int32), params), zeros, zeros)


def adam_step(params, state: AdamState, grads, lr, active=None, b1=0.9, b2=0.999, eps=1e-8):
    """One torch Adam step (beta 0.9/0.999, eps 1e-8, no weight decay).

    `active` (a pytree of bools, or None for all) marks the tensors that got a gradient; the
    others keep their values AND their state, as torch skips a parameter whose grad is None
    (detail spec 0.5, Q4).
    """
    if active is None:
        active = jax.tree.map(lambda p: True, params)

    def leaf(p, g, count, m, v, on):
        count_new = count + 1
        m_new = b1 * m + (1 - b1) * g
        v_new = b2 * v + (1 - b2) * g * g
        t = count_new.astype(p.dtype)
        denom = jnp.sqrt(v_new) / jnp.sqrt(1 - b2**t) + eps
        p_new = p - (lr / (1 - b1**t)) * m_new / denom
        if on is True:
            return p_new, count_new, m_new, v_new
        keep = lambda new, old: jnp.where(on, new, old)
        return keep(p_new, p), keep(count_new, count), keep(m_new, m), keep(v_new, v)

    out = jax.tree.map(leaf, params, grads, state.count, state.mu, state.nu, active)
    pick = lambda i: jax.tree.map(lambda o: o[i], out, is_leaf=lambda x: isinstance(x, tuple))
    return pick(0), AdamState(pick(1), pick(2), pick(3))


def clip_by_global_norm(grads, max_norm: float | None):
    """torch `clip_grad_norm_` (scale by max_norm / (norm + 1e-6) when the norm exceeds it)."""
    if max_norm is None:
        return grads
    norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads)))
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree.map(lambda g: g * scale, grads)


def retain_epoch(loss_fn, params, opt_state, retain: Batch, cap, lr, key, grad_transform=None, max_norm=None):
    """One fine-tuning epoch: a fresh shuffle of `retain`, at most `cap` rows, batches of 256.

    A `lax.scan` over the loader batches; a batch without real rows takes no step.
    loss_fn(params, batch, key) is the batch loss; grad_transform(grads, batch) may rescale the
    gradients (Kookmin's x10, SEIF's class weight). Returns (params, opt_state, mean loss).
    """
    shuffle_key, step_key = jax.random.split(key)
    batches = loader_batches(keep_first(shuffle_rows(retain, shuffle_key), cap))

    def step(carry, inputs):
        params, opt_state = carry
        batch, index = inputs
        batch_key = jax.random.fold_in(step_key, index)

        def take(carry):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, batch, batch_key)
            if grad_transform is not None:
                grads = grad_transform(grads, batch)
            params, opt_state = adam_step(params, opt_state, clip_by_global_norm(grads, max_norm), lr)
            return (params, opt_state), loss

        has_rows = real_rows(batch) > 0
        carry, loss = jax.lax.cond(has_rows, take, lambda c: (c, jnp.float32(0.0)), (params, opt_state))
        return carry, (loss, has_rows)

    n_batches = batches["weight"].shape[0]
    (params, opt_state), (losses, taken) = jax.lax.scan(step, (params, opt_state), (batches, jnp.arange(n_batches)))
    return params, opt_state, jnp.sum(losses) / jnp.maximum(jnp.sum(taken), 1)


def retain_epochs(loss_fn, params, opt_state, retain: Batch, cap, n_epochs, lr, key, **options):
    """`n_epochs` (traced) retain epochs; returns (params, opt_state, last epoch's mean loss)."""

    def body(epoch, carry):
        params, opt_state, _ = carry
        return retain_epoch(loss_fn, params, opt_state, retain, cap, lr, jax.random.fold_in(key, epoch), **options)

    return jax.lax.fori_loop(0, n_epochs, body, (params, opt_state, jnp.float32(0.0)))


def path_name(path) -> str:
    """'params/user_embedding/embedding' for a pytree key path."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


# ---------------------------------------------------------------------------------------------
# the fine-tuning after an influence step (GIF, IDEA)


def fine_tunes(method) -> bool:
    """Whether GIF's or IDEA's retain fine-tuning runs: `method.retain_finetune` when set, else
    only in compat="erase".

    The GIF and IDEA papers stop at the influence step (plus noise for IDEA); the fine-tuning on
    retain rows after every request is ERASE's addition, so the correct modes leave it out by
    default. It also works against the removal on models with per-user embeddings: the retain
    rows are whole users other than those unlearned so far, so the persistent Adam moves the
    item embeddings while the unlearned users' embeddings stay put, and their rankings drift
    towards chance: their exposure to the forgotten category ends above the trained model's,
    about where SEIF's destroyed model leaves it, also when Adam starts from the trained
    optimiser state (measured: benchmarks/RESULTS.md, "The removal Newton step over the whole
    data").
    """
    if method.retain_finetune is not None:
        return bool(method.retain_finetune)
    return method.compat == "erase"


def finetune_epochs(cap: int, retain: Batch) -> int:
    """E = 1 + U // |R| (host side; passed traced, so it does not trigger compilation)."""
    n_retain = int(np.sum(np.asarray(retain["weight"]) > 0))
    return 1 + cap // max(n_retain, 1)


def retain_passes(model, params, opt_state, context, retain: Batch, cap, epochs, learning_rate, key):
    """`epochs` shuffled passes over R in 256-row batches, each pass capped at `cap` rows, one
    `optax.adam(learning_rate)` step per non-empty batch (the original's
    `_train_epoch_efficient_shuffle`). Returns (params, opt_state, mean loss of the batches
    stepped on).

    `epochs` may be traced: the passes run in a `fori_loop`, so a stream whose requests need
    different numbers of passes (E = 1 + U // |R| varies with |F| and |R|) compiles once.
    """
    optimizer = optax.adam(learning_rate)

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
        stacked = loader_batches(keep_first(shuffle_rows(retain, pass_key), cap))  # [n_chunks, 256, ...]
        step_keys = jax.random.split(jax.random.fold_in(pass_key, 1), stacked["weight"].shape[0])
        carry, _ = jax.lax.scan(step, carry, (stacked, step_keys))
        return carry

    params, opt_state, total, count = jax.lax.fori_loop(
        0, epochs, one_pass, (params, opt_state, jnp.float32(0), jnp.float32(0))
    )
    return params, opt_state, total / jnp.maximum(count, 1.0)
