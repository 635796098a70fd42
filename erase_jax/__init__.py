"""erase-jax: the ERASE recommendation-unlearning benchmark in JAX.

The Python API (`import erase_jax as ej`; `erase_jax.api`, `erase_jax.bench`):

    run = ej.train_model(["model=BPR", "dataset=synthetic"])          # or out="runs/bpr"; ej.load(folder)
    after = ej.unlearn_requests(run, "sensitive:Horror", "scif", n_requests=5, fraction=0.01)
    ej.evaluate(after), ej.evaluate(after, params=run.params)    # unlearned vs trained, same data
    ej.time_request(run, "sensitive:Horror", "scif", fraction=0.01).median_seconds

train_model, load, evaluate, forget_set, requests (the request loop), unlearn_requests, retrain, protocol (the
full job, as `erase-jax unlearn`), time_request, time_stream, scenario_config, load_config,
RunConfig, UnlearnConfig, method_names. Examples: `examples/`.

Layout: `tasks/` (task plug-ins), `models/` (recommenders by task family), `data/`, `batching/`,
`train.py`, `evaluators/`, `unlearn/` (`protocol/`, `methods/`, `influence/`, `exact/`). Models,
methods, tasks and evaluators are found by name through self-filling registries (`registry.py`).

Docstrings cite the original system as "spec N.N" (data-and-evaluation for data, scenarios,
models and evaluation; unlearning-algorithms for the protocol and the methods), "detail spec"
and quirk labels such as "Q-SCIF-1": docs/original.md summarises each cited part, and
docs/differences.md lists where erase-jax departs from the original on purpose.
"""

__version__ = "0.1.0"

_API = {
    "erase_jax.api": ("Run", "train_model", "load", "evaluate", "forget_set", "requests", "unlearn_requests", "retrain",
                      "protocol", "scenario_config"),
    "erase_jax.bench": ("Timing", "time_request", "time_stream"),
    "erase_jax.config": ("load_config", "RunConfig"),
    "erase_jax.unlearn.protocol.run": ("UnlearnConfig",),
    "erase_jax.unlearn.protocol.loop": ("RequestLoop",),
    "erase_jax.unlearn.methods.base": ("method_names",),
}
__all__ = ["__version__", *(name for names in _API.values() for name in names)]


def __getattr__(name: str):
    """The API's names, imported on first use (so `erase-jax --help` starts without JAX)."""
    import importlib

    for module, names in _API.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'erase_jax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
