"""Approximate unlearning methods, one file each (`base.py`: the interface and the registry).

A method file holds the method's dataclass, its docstring (paper, equation, deviations) and its
default (compat="correct") request; `<method>_erase.py` holds the original's arithmetic for
compat="erase". Shared pieces: `batches` (row helpers), `newton` (the removal Newton system and
step application), `noise` (certification noise), `finetune` (retain fine-tuning, torch Adam),
`batch_means` (the original's sums of loader-batch means). No method imports another method.
"""
