"""Certification noise for the Newton methods that add it (CEU, IDEA): where it goes, and the draw.

A certified removal (CEU, IDEA) releases theta~ + b, b ~ N(0, sigma^2 I); its guarantee is a
statement about the released parameters. Two places for b (`noise_mode`):

* "release": the method state keeps the noiseless theta~, every request steps from it, and each
  release adds a fresh draw (`release_with_noise`, key `fold_in(request key, NOISE_STREAM)`):
  after n requests the released model carries one draw, sigma per entry.
* "accumulate" (the original): b enters the model itself, so the next request starts from the
  noisy parameters and the noise compounds to sigma sqrt(n) per entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NOISE_MODES = ("release", "accumulate")
NOISE_STREAM = 0x6E6F  # fold_in tag of the released-noise key (independent of the step's keys)


def check_noise_mode(name: str, noise_mode: str | None) -> None:
    if noise_mode is not None and noise_mode not in NOISE_MODES:
        raise ValueError(f"{name}: noise_mode must be one of {NOISE_MODES} or None, got {noise_mode!r}")


def resolved_noise_mode(method) -> str:
    """`method.noise_mode`, else "release" in compat="correct" and "accumulate" (the original's) in "erase"."""
    if method.noise_mode is not None:
        return method.noise_mode
    return "release" if method.compat == "correct" else "accumulate"


def noiseless_init(noise_mode: str, params):
    """The method state of a noise-adding method: the noiseless parameters ("release")."""
    return jax.tree.map(jnp.array, params) if noise_mode == "release" else ()


@jax.jit
def release_with_noise(params, scale, key):
    """params + scale * N(0, I): the released copy of the noiseless parameters."""
    return jax.tree.map(jnp.add, params, gaussian_noise(key, params, scale))


def gaussian_noise(key, params, scale):
    """scale * N(0, I) shaped like `params` (independent per leaf)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])
