"""The bucket width ladder, against hand-written ladders."""

from erase_jax.batching.sequences import bucket_widths
from erase_jax.data.baskets import occurrence_widths, step_widths
from erase_jax.data.widths import doubling_widths


def test_doubling_widths_by_hand():
    assert doubling_widths(50, 8) == (8, 16, 32, 50)
    assert doubling_widths(64, 8) == (8, 16, 32, 64)
    assert doubling_widths(5, 8) == (5,)
    assert doubling_widths(6, 1) == (1, 2, 4, 6)
    assert doubling_widths(0, 1) == (1,)


def test_task_ladders_use_it():
    assert bucket_widths(50) == (8, 16, 32, 50)
    assert occurrence_widths(200) == (8, 16, 32, 64, 128, 200)
    assert step_widths(48) == (1, 2, 4, 8, 16, 32, 48)
