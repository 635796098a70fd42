"""Padded widths for bucketing variable-length rows, so that an epoch compiles once per width.

Rows are padded to the narrowest width of a short ladder that holds them: powers of two from
`smallest` up to (not including) the limit, then the limit itself. A ladder of doubling widths
wastes less than half of any row's padding and keeps the number of compiled shapes logarithmic
in the limit. Sequence prefixes (`erase_jax.batching.sequences`) and basket histories
(`erase_jax.data.baskets`: occurrences and basket steps) use it.
"""

from __future__ import annotations


def doubling_widths(limit: int, smallest: int) -> tuple[int, ...]:
    """(smallest, 2 smallest, 4 smallest, ... below `limit`, then `limit`); just `(limit,)`
    when `limit` <= `smallest`, and `(1,)` for a limit below 1 (an empty ladder has no shape)."""
    widths, width = [], smallest
    while width < limit:
        widths.append(width)
        width *= 2
    return (*widths, max(limit, 1))
