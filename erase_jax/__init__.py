"""erase-jax: the ERASE recommendation-unlearning benchmark in JAX.

Layout: `tasks/` (task plug-ins), `models/` (recommenders by task family), `data/`, `batching/`,
`train.py`, `evaluators/`, `unlearn/` (`protocol/`, `methods/`, `influence/`, `exact/`). Models,
methods, tasks and evaluators are found by name through self-filling registries (`registry.py`).

Docstrings cite the original system as "spec N.N" (data-and-evaluation for data, scenarios,
models and evaluation; unlearning-algorithms for the protocol and the methods), "detail spec"
and quirk labels such as "Q-SCIF-1": docs/original.md summarises each cited part, and
docs/differences.md lists where erase-jax departs from the original on purpose.
"""

__version__ = "0.1.0"
