"""SBR fraud sessions: the bandwagon attack of ERASE's spam scenario for session data.

Data-and-evaluation spec 3.3.1 (the original's `dataset/create_fraud_sessions_sbr.py`, run
with ratio 0.01, 10 targets, attack "bandwagon", target strategy "unpopular"). Fake sessions
click popular "filler" items, to look like real sessions, plus one or two unpopular target
items that the attack promotes. Their lengths and click gaps are drawn from models fitted to
the data's own sessions. Each fake session is a new user with one session, so the spam
scenario's forget set is one request per fake session (spec 3.3.3), the same as for
the CF fakes of `scenarios.spam.spam_users`.

The data's sessions are, in order of preference: session ids given per row; sessions cut
by an inactivity gap (`sequences.sessions_by_gap`); one session per user, which is what the
SBR task trains on by default (spec 1.3) and what Diginetica's "users" already are.
"""

from __future__ import annotations

import dataclasses
import math
import operator

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.fakes import append_fake_users, fake_ratings, popular_and_unpopular_items
from erase_jax.data.scenarios.forget_set import ForgetSet
from erase_jax.data.sequences import sessions_by_gap

MIN_LENGTH = 4  # the shortest fake session
LENGTH_SCALE = 0.8  # fake sessions are 0.8 x the mean real length ...
GAP_SCALE = 0.7  # ... and click 1 / 0.7 times faster
WEIBULL_SHAPE_RANGE = (1e-2, 1e2)  # coefficient of variation ~ 5e155 down to ~ 0.013


@dataclasses.dataclass(frozen=True)
class SessionStatistics:
    """What the attack copies from the real sessions: length and within-session click gaps."""

    n_sessions: int
    mean_length: float
    std_length: float
    max_length: int
    mean_gap: float
    std_gap: float


def session_statistics(inter: Interactions, sessions: np.ndarray) -> SessionStatistics:
    """Session lengths and the gaps between consecutive clicks of a session (time-sorted),
    pooled over all sessions. `sessions` is one session id per row."""
    if inter.timestamps is None:
        raise ValueError(f"{inter.name}: fraud sessions need timestamps (click gaps are copied from the data)")
    sessions = np.asarray(sessions)
    if sessions.shape != (len(inter),):
        raise ValueError(f"{inter.name}: one session id per row is needed, got shape {sessions.shape}")
    _, session, lengths = np.unique(sessions, return_inverse=True, return_counts=True)
    order = np.lexsort((inter.timestamps, session))
    same_session = session[order][1:] == session[order][:-1]
    gaps = np.diff(inter.timestamps[order])[same_session]
    if not len(gaps):
        raise ValueError(f"{inter.name}: no session has two clicks, so there are no click gaps to copy")
    return SessionStatistics(
        n_sessions=len(lengths),
        mean_length=float(lengths.mean()),
        std_length=float(lengths.std()),
        max_length=int(lengths.max()),
        mean_gap=float(gaps.mean()),
        std_gap=float(gaps.std()),
    )


def fraud_sessions(
    inter: Interactions,
    ratio: float = 0.01,
    n_target_items: int = 10,
    seed: int = 0,
    sessions: np.ndarray | None = None,
    session_gap: float | None = None,
) -> tuple[Interactions, ForgetSet]:
    """Appends fake single-session users (a bandwagon attack); returns (poisoned data, their forget set).

    Spec 3.3.1, with S the number of real sessions:

    * n_fake = ceil(ratio * S / (1 - ratio)): fakes are a share `ratio` of all sessions.
    * Targets: `n_target_items` items drawn without replacement from the 20 % least clicked
      items; fillers from the 20 % most clicked, with replacement (`scenarios.fakes`' popularity
      order: row counts, ties by item id).
    * Length L = max(4, Poisson(lam)), lam ~ LogNormal with mean 0.8 x the mean session
      length and the sessions' length std; L clipped to [4, max(4, longest session)].
    * Target clicks: 2 if L >= 6 else 1, at uniform positions in
      [max(1, floor(0.2 L)), max(2, floor(0.9 L))), each a uniformly chosen target; the
      other clicks are fillers.
    * Times: a uniform integer start in [min time, max time), then gaps
      max(1, round(Weibull)) with mean 0.7 x the real mean gap and coefficient of variation
      cv = real gap std / (0.7 x real mean gap).

    Sessions: `sessions` (one id per row) if given, else cut by `session_gap` seconds of
    inactivity if given, else one session per user. With `session_gap`, fake gaps are capped
    at it, so that cutting the poisoned data by the same gap keeps each fake one session.

    Deliberate differences from the original:

    * The two target positions are distinct (the original draws them independently and a
      collision leaves a long session with one target click).
    * The Weibull shape k solves Gamma(1 + 2/k) / Gamma(1 + 1/k)^2 - 1 = cv^2 (`weibull_shape`)
      instead of the original's k = 1.2 / cv, which matches only near cv = 1 and explodes
      for heavy-tailed gaps: on ml-100k (one session per user, cv = 21.5) it gives k = 0.056,
      a Weibull whose cv is about 88,000.
    * Fake users are named by `scenarios.fakes.append_fake_users` (max integer token + k, or
      `fraud_<k>`); the original requires integer session ids.
    * The data's ratings, when it has any, are set as for the CF fakes (highest rating on
      targets, resampled real ratings on fillers); SBR training ignores them.

    Deterministic given `seed` (a numpy Generator). Real rows keep their ids and order; the
    fake rows follow, grouped by fake user in time order.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"poisoning ratio must lie in (0, 1), got {ratio}")
    if inter.timestamps is None:
        raise ValueError(f"{inter.name}: fraud sessions need timestamps (click gaps are copied from the data)")
    if sessions is None:
        sessions = inter.users if session_gap is None else sessions_by_gap(inter.users, inter.timestamps, session_gap)
    stats = session_statistics(inter, sessions)
    popular, unpopular = popular_and_unpopular_items(inter)
    if not 1 <= n_target_items <= len(unpopular):
        raise ValueError(
            f"{inter.name}: n_target_items = {n_target_items} must lie in [1, {len(unpopular)}], the number "
            "of items among the 20 % least clicked"
        )
    rng = np.random.default_rng(operator.index(seed))
    n_fake = math.ceil(ratio * stats.n_sessions / (1 - ratio))
    targets = rng.choice(unpopular, n_target_items, replace=False).astype(np.int32)
    lengths = _fake_lengths(stats, n_fake, rng)

    fake_of_row = np.repeat(np.arange(n_fake), lengths)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    items = popular[rng.integers(len(popular), size=len(fake_of_row))]
    target_session, target_position = _target_positions(lengths, rng)
    target_rows = starts[target_session] + target_position
    is_target = np.zeros(len(items), bool)
    is_target[target_rows] = True
    items[target_rows] = rng.choice(targets, len(target_rows))

    timestamps = _fake_times(inter.timestamps, stats, lengths, session_gap, rng)
    ratings = fake_ratings(inter, is_target, rng)
    return append_fake_users(inter, n_fake, fake_of_row, items, timestamps, ratings, ratio, seed, targets)


def weibull_shape(cv: float) -> float:
    """The Weibull shape k whose coefficient of variation is `cv` (bisection in log k).

    cv(k)^2 = Gamma(1 + 2/k) / Gamma(1 + 1/k)^2 - 1 falls monotonically in k; k = 1 is the
    exponential (cv = 1). `cv` is clipped to what shapes in `WEIBULL_SHAPE_RANGE` reach.
    """
    if not cv > 0:
        raise ValueError(f"a Weibull coefficient of variation must be positive, got {cv}")
    log_target = 2 * math.log(cv)
    low, high = (math.log(k) for k in WEIBULL_SHAPE_RANGE)
    for _ in range(60):
        middle = (low + high) / 2
        if _log_squared_cv(math.exp(middle)) > log_target:
            low = middle  # too variable: a larger shape
        else:
            high = middle
    return math.exp((low + high) / 2)


def _log_squared_cv(k: float) -> float:
    log_ratio = math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)
    return math.log(math.expm1(log_ratio))


def _fake_lengths(stats: SessionStatistics, n_fake: int, rng) -> np.ndarray:
    """max(4, Poisson(lam)), lam ~ LogNormal(mean 0.8 x mean length, std of lengths), clipped."""
    mean = LENGTH_SCALE * stats.mean_length
    sigma2 = math.log1p((stats.std_length / mean) ** 2)
    lam = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), n_fake)
    return np.clip(rng.poisson(lam), MIN_LENGTH, max(MIN_LENGTH, stats.max_length))


def _target_positions(lengths: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(fake session, position in it) of every target click: one per session, a second,
    distinct one when L >= 6, uniform in [max(1, floor(0.2 L)), max(2, floor(0.9 L)))."""
    low = np.maximum(1, lengths // 5)  # floor(0.2 L) in integers, free of float rounding
    high = np.maximum(2, (9 * lengths) // 10)  # high - low >= 2 for every L >= 4
    first = rng.integers(low, high)
    second = rng.integers(low, high - 1)  # one slot fewer, then step over `first`
    second = np.where(second >= first, second + 1, second)
    two = lengths >= 6
    return np.r_[np.arange(len(lengths)), np.flatnonzero(two)], np.r_[first, second[two]]


def _fake_times(real_times: np.ndarray, stats: SessionStatistics, lengths: np.ndarray, session_gap, rng) -> np.ndarray:
    """A uniform integer start per fake session, then Weibull click gaps (spec 3.3.1)."""
    mean = GAP_SCALE * stats.mean_gap
    n_clicks = int(lengths.sum())
    if stats.std_gap > 0:
        shape = weibull_shape(stats.std_gap / mean)
        gaps = mean / math.gamma(1 + 1 / shape) * rng.weibull(shape, n_clicks)
    else:  # every real gap is equal: so are the fake ones
        gaps = np.full(n_clicks, mean)
    gaps = np.maximum(1.0, np.round(gaps))
    if session_gap is not None:
        gaps = np.minimum(gaps, session_gap)
    first, last = math.floor(real_times.min()), math.ceil(real_times.max())
    session_starts = rng.integers(first, max(last, first + 1), size=len(lengths))
    first_click = np.r_[0, np.cumsum(lengths)[:-1]]
    gaps[first_click] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first_click], lengths)
    return np.repeat(session_starts, lengths).astype(np.float64) + elapsed
