"""SEIF: erase by relative Gaussian noise, then repair by class-weighted fine-tuning on retain data.

A NeurIPS 2023 machine-unlearning competition solution as ERASE's `trainer.seif` runs it
(unlearning-algorithms spec 6.8; detail spec section 8):

1. Erase. Every parameter whose lower-cased path contains 'embedding', 'linear', 'mlp' or
   'interaction' gets P <- P + eps * |P|, eps ~ N(0, seif_erase_std^2) elementwise (so exact
   zeros stay zero). For an embedding model: the user and item embedding tables.
2. Repair. seif_repair_epochs full shuffled passes over R (no row cap, batches of 256), one Adam
   step per batch at lr seif_learning_rate on

       loss(b) * mean_i w_i,   w_i = seif_forget_class_weight if row i's item is one of F's items, else 1

   (one scalar per batch, Q-SEIF-1; mean over the batch's real rows). The "class": the
   original tests the field `item_id`, here the task's positive item of a row
   (`task.positive_items`: in a pairwise batch the POSITIVE item, in a sequence batch the next
   item); F's items are all of the request users' training items (Q1). Gradients are clipped to
   `max_norm` if set. After epoch seif_repair_epochs - 2, the noise of step 1 is re-applied with
   std seif_erase_std_final to the same tensors.

Over a request stream the defaults destroy an embedding model, as the original's do: step 1
noises the WHOLE tables at every request (not only the request's rows), so the noise compounds
(after n requests an entry's expected square has grown (1 + std^2)^n and its sign has flipped
with probability (1 - (1 - 2q)^n) / 2, q = Phi(-1/std): about one half long before the stream's
end at std 0.6), while step 2's few Adam steps at lr 7e-4 on 32|F| retain rows move each entry
far less than one request's noise. Switching the steps off one at a time on ML-100K BPR
(`experiments/seif_collapse_ml-100k.py`, results in `experiments/results/seif_collapse_ml-100k.json`)
puts the whole loss on the erase noise; the repair alone is harmless. Not a bug: these are the
original's defaults (spec section 8), kept.

Decisions: the optimiser is the original's persistent trainer Adam (torch-style, per-tensor step
counts; beta 0.9/0.999), not the SGD recipe whose seif_momentum / seif_weight_decay the original
declares and ignores; they are kept under their names for configuration compatibility and are
unused (Q8). Its state persists across requests in the method state; only SEIF uses it, at
seif_learning_rate, so there is no learning rate to restore. The repair and the weighting use
`context_after`. The 600 s timeout is not checked (the request is one compiled call). Retain
rows of already-unlearned users are not filtered (the protocol's sampler excludes them).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp

from erase_jax.tasks.base import task_of
from erase_jax.unlearn.methods.base import Batch, RequestData, register
from erase_jax.unlearn.methods.batches import real_rows
from erase_jax.unlearn.methods.finetune import adam_init, path_name, retain_epoch

NOISED_NAME_PARTS = ("embedding", "linear", "mlp", "interaction")


def is_noised(name: str) -> bool:
    return any(part in name.lower() for part in NOISED_NAME_PARTS)


def relative_noise(params, std, key):
    """P <- P + N(0, std^2) * |P| on the name-matched tensors (step 1)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    new = [
        p + std * jax.random.normal(k, p.shape, p.dtype) * jnp.abs(p) if is_noised(path_name(path)) else p
        for (path, p), k in zip(leaves, keys)
    ]
    return treedef.unflatten(new)


def forget_class_factor(task, batch: Batch, forget: Batch, forget_class_weight: float) -> jax.Array:
    """mean_i w_i over the batch's real rows, w_i = forget_class_weight if row i's item
    (`task.positive_items`, the original's `item_id` field) is one of F's items. A task whose
    rows have several positive items ([b, K], negative entries padding: a target basket)
    counts a row as forgotten when any of its items is one of F's."""
    forget_positive = task.positive_items(forget).reshape(forget["weight"].shape[0], -1)
    forget_items = jnp.where((forget["weight"] > 0)[:, None] & (forget_positive >= 0), forget_positive, -1).reshape(-1)
    positive = task.positive_items(batch).reshape(batch["weight"].shape[0], -1)
    matches = (positive[:, :, None] == forget_items[None, None, :]) & (forget_items >= 0)[None, None, :]
    in_forget = jnp.any(matches, axis=(1, 2))
    w = jnp.where(in_forget, forget_class_weight, 1.0)
    real = batch["weight"] > 0
    return jnp.sum(jnp.where(real, w, 0.0)) / jnp.maximum(jnp.sum(real), 1)


def repair_loss(model, context, forget: Batch, forget_class_weight: float):
    """(params, batch, key) -> loss(b) * mean_i w_i, the repair objective of one batch."""

    def loss(params, batch, key):
        return model.loss(params, context, batch, key) * forget_class_factor(task_of(model), batch, forget, forget_class_weight)

    return loss


@register
@dataclasses.dataclass(frozen=True)
class SEIF:
    """SEIF with the original's names and defaults (module docstring)."""

    name: ClassVar[str] = "seif"

    seif_erase_std: float = 0.6
    seif_erase_std_final: float = 0.005
    seif_repair_epochs: int = 4
    seif_forget_class_weight: float = 0.05
    seif_learning_rate: float = 7e-4
    seif_momentum: float = 0.9  # unused, as in the original (module docstring)
    seif_weight_decay: float = 5e-4  # unused, as in the original
    max_norm: float | None = None

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(8 * n_forget_rows * self.seif_repair_epochs, 32)  # the original's dispatcher rule

    def init(self, model, params):
        return adam_init(params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        return _seif_request(self, model, params, state, request.forget, request.retain, request.context_after, key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _seif_request(method: SEIF, model, params, opt_state, forget, retain, context, key):
    erase_key, final_key, repair_key = jax.random.split(key, 3)
    params = relative_noise(params, method.seif_erase_std, erase_key)
    loss_fn = repair_loss(model, context, forget, method.seif_forget_class_weight)
    cap = retain["weight"].shape[0]  # full passes: no row cap
    final_noise_after = method.seif_repair_epochs - 2

    def epoch_body(epoch, carry):
        params, opt_state, _ = carry
        params, opt_state, loss = retain_epoch(
            loss_fn, params, opt_state, retain, cap, method.seif_learning_rate,
            jax.random.fold_in(repair_key, epoch), max_norm=method.max_norm,
        )
        params = jax.lax.cond(
            epoch == final_noise_after,
            lambda p: relative_noise(p, method.seif_erase_std_final, final_key),
            lambda p: p,
            params,
        )
        return params, opt_state, loss

    params, opt_state, last_loss = jax.lax.fori_loop(
        0, method.seif_repair_epochs, epoch_body, (params, opt_state, jnp.float32(0.0))
    )
    diagnostics = {
        "repair_loss": last_loss,
        "retain_rows": real_rows(retain),
    }
    return params, opt_state, diagnostics
