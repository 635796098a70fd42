"""Layers the sequence models share: dropout, dense products, the GRU scan, layer norm, torch
initialisers.

The sequence models are Flax modules whose parameters are declared with `self.param`, so
`module.init` returns a plain pytree of arrays ({"params": {...}}) that every influence path
differentiates as it is. The layers here are plain functions of arrays (the module passes its
parameters in), except `LayerNorm`, a module holding its scale and bias.

Initialisers: torch draws each tensor of a module from the global generator in a fixed
order; the models here draw tensor i from key i of `jax.random.split(init_key, n)`
(`split_keys`), each through `keyed`, so a model's parameters depend only on its init key
and the order of its tensors, never on Flax's name-derived parameter keys.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def last_position(values: jax.Array, lengths: jax.Array) -> jax.Array:
    """values[:, lengths - 1] for [n, L, ...] values (RecBole `gather_indexes`)."""
    return jnp.take_along_axis(values, (lengths - 1)[:, None, None], axis=1)[:, 0]


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout (torch's), a no-op when `key` is None (evaluation).

    The mask is keep = hash(element index, key) >= rate * 2^32: `key` gives two 32-bit seeds
    and every element's index is mixed with them by two rounds of the murmur3 finaliser (a
    bijection on 32 bits with full avalanche). A threefry draw per element (what
    `jax.random.bernoulli` does) is a large share of a small model's training step on CPU; this
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

    XLA's CPU backend differentiates a [n, L, d] @ [d, k] product several times slower than
    the same product on [n * L, d].
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
    layout (no [n, L, 3h] transpose); the scan itself is `gru_recurrence`.
    """
    return gru_recurrence(w_hh, b_hh, dense(inputs, w_ih) + b_ih, hidden_size, lengths)


def gru_recurrence(w_hh, b_hh, projected: jax.Array, hidden_size: int, lengths: jax.Array | None = None) -> jax.Array:
    """The GRU's sequential part on projected inputs [L, n, 3h] (x_t W_ih + b_ih, gates r, z, n):
    every state [L, n, h], or with `lengths` the state after each row's last item, [n, h]. With
    `lengths` the scan carries the last state instead of stacking all of them, so neither the
    stack nor its gradient is materialised."""
    initial = jnp.zeros((projected.shape[1], hidden_size), projected.dtype)

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

    steps = jnp.arange(projected.shape[0])
    return jax.lax.scan(step_keep_last, (initial, initial), (projected, steps))[0][1]


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * scale + bias.

    The variance is the mean squared deviation (two passes, as torch); `flax.linen.LayerNorm`
    computes the same function with other roundings.
    """

    features: int
    eps: float

    def setup(self):
        self.scale = self.param("scale", nn.initializers.ones, (self.features,))
        self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) / jnp.sqrt(variance + self.eps) * self.scale + self.bias


# Initialisers, (key, shape) -> array, torch's on a [fan_in, fan_out]-laid-out matrix.
Initialiser = Callable[[jax.Array, tuple[int, ...]], jax.Array]


def xavier_normal(key, shape):
    return jax.random.normal(key, shape) * np.sqrt(2.0 / (shape[0] + shape[1]))


def xavier_uniform(key, shape):
    bound = np.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def uniform(bound: float) -> Initialiser:
    """U(-bound, bound), e.g. torch's default for Linear and GRU weights, bound = 1/sqrt(fan_in)."""
    return lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def normal(std: float) -> Initialiser:
    """N(0, std^2), untruncated (torch's normal_)."""
    return lambda key, shape: std * jax.random.normal(key, shape)


def split_keys(key: jax.Array | None, n: int) -> list:
    """The n keys of `jax.random.split(key, n)`, tensor i's being entry i; n Nones for None
    (a module being applied rather than initialised, whose initialisers do not run)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def keyed(initialiser: Initialiser, key: jax.Array | None) -> Initialiser:
    """`initialiser` as a Flax parameter initialiser that draws with `key` rather than the key
    Flax derives from the parameter's name (which it still uses where `key` is None)."""
    return lambda flax_key, shape: initialiser(flax_key if key is None else key, shape)

