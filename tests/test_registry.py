"""Adding a model or an unlearning method is adding one file.

The test writes a toy model module and a toy method module, one file each, into folders that
the package's model and method folders are extended with (as if the files had been dropped into
`erase_jax/models/` and `erase_jax/unlearn/methods/`), and edits nothing else. The registries
find both by name, the model trains through `train_run`, both pass the method contract of
`tests/unlearn/methods/contract.py`, and the method unlearns the model through the sequential
protocol (`jobs.unlearn`, in the slow tier).
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import erase_jax.models
import erase_jax.unlearn.methods
from erase_jax.models import build_model
from erase_jax.models.base import MODELS
from erase_jax.unlearn import build_method, method_names
from erase_jax.unlearn.methods.base import METHODS
from erase_jax.unlearn.protocol import jobs
from erase_jax.unlearn.protocol.run import UnlearnConfig
from tests.tiny import SCENARIO, tiny_run
from tests.unlearn.methods.contract import cheap_method, check_method

TOY_MODEL = '''
"""ToyMF: dot-product scores with a squared loss, (<e_u, e_pos> - 1)^2 + <e_u, e_neg>^2 per row."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from erase_jax.models.base import register
from erase_jax.models.cf.base import CFModelBase
from erase_jax.models.cf.bpr import CFShape


@register
@dataclasses.dataclass(frozen=True)
class ToyMF(CFModelBase):
    name: ClassVar[str] = "ToyMF"
    trainable: ClassVar[bool] = True
    user_rows_are_local: ClassVar[bool] = True  # the loss reads the user table at the batch's users only

    embedding_size: int = 8

    def prepare(self, train, capacity=None):
        return CFShape(train.n_users, train.n_items)

    def init(self, key, context):
        user_key, item_key = jax.random.split(key)
        table = lambda key, n: 0.1 * jax.random.normal(key, (n, self.embedding_size))
        return {"params": {"user_embedding": {"embedding": table(user_key, context.n_users)},
                           "item_embedding": {"embedding": table(item_key, context.n_items)}}}

    def loss(self, params, context, batch, key):
        users = params["params"]["user_embedding"]["embedding"][batch["users"]]
        items = params["params"]["item_embedding"]["embedding"]
        pos = jnp.sum(users * items[batch["pos"]], axis=-1)
        neg = jnp.sum(users * items[batch["neg"]], axis=-1)
        rows = (pos - 1.0) ** 2 + neg**2
        return jnp.sum(batch["weight"] * rows) / jnp.maximum(jnp.sum(batch["weight"]), 1e-12)

    def scores(self, params, context, query):
        users = params["params"]["user_embedding"]["embedding"][query["users"]]
        return users @ params["params"]["item_embedding"]["embedding"].T
'''

TOY_METHOD = '''
"""ToyAscent: gradient steps on loss(retain rows) - loss(forget rows), counting its requests."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from erase_jax.unlearn.methods.base import register


@register
@dataclasses.dataclass(frozen=True)
class ToyAscent:
    name: ClassVar[str] = "toy_ascent"

    learning_rate: float = 0.05
    steps: int = 2

    def retain_budget(self, n_forget_rows: int) -> int:
        return 4 * n_forget_rows

    def init(self, model, params):
        return {"n_requests": jnp.int32(0)}

    def unlearn(self, model, params, state, request, key):
        def objective(p):
            kept = model.loss(p, request.context_after, request.retain, key)
            return kept - model.loss(p, request.context_before, request.forget, key)

        for _ in range(self.steps):
            params = jax.tree.map(lambda p, g: p - self.learning_rate * g, params, jax.grad(objective)(params))
        return params, {"n_requests": state["n_requests"] + 1}, {"objective": objective(params)}
'''


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    """Writes the two files into a models folder and a methods folder that the package's own are
    extended with, and lets the registries load afresh (as in a new process). Afterwards
    everything is undone and the registries know neither toy."""
    root = tmp_path_factory.mktemp("plugins")
    for registry in (MODELS, METHODS):
        registry.load_all()  # every package plug-in registered in the dicts that are restored afterwards
    with pytest.MonkeyPatch.context() as patch:
        for package, folder, name, text in ((erase_jax.models, "models", "toy_mf.py", TOY_MODEL),
                                            (erase_jax.unlearn.methods, "methods", "toy_ascent.py", TOY_METHOD)):
            (root / folder).mkdir()
            (root / folder / name).write_text(textwrap.dedent(text))
            patch.setattr(package, "__path__", [*package.__path__, str(root / folder)])
        for registry in (MODELS, METHODS):
            patch.setattr(registry, "_classes", dict(registry._classes))
            patch.setattr(registry, "_loaded", False)
        yield root
    for module in ("erase_jax.models.toy_mf", "erase_jax.unlearn.methods.toy_ascent"):
        sys.modules.pop(module, None)
    assert "toy_ascent" not in method_names()
    with pytest.raises(KeyError, match="unknown model"):
        build_model("ToyMF")


@pytest.fixture(scope="module")
def toy_run(toys, tmp_path_factory):
    return tiny_run("ToyMF", tmp_path_factory.mktemp("toy") / "run", ["model_params.embedding_size=4"])


def test_the_toys_are_found_by_name(toys):
    model = build_model("toymf", embedding_size=4)  # case-insensitive
    assert type(model).__module__ == "erase_jax.models.toy_mf" and model.task == "CF"
    assert "toy_ascent" in method_names() and build_method("toy_ascent", steps=1).steps == 1
    assert type(build_method("toy_ascent")).__module__ == "erase_jax.unlearn.methods.toy_ascent"
    with pytest.raises(ValueError, match="unknown options"):
        build_method("toy_ascent", no_such_option=1)


def test_the_toys_keep_the_method_contract(toy_run, tmp_path):
    """The toy method on the toy model, and a real method (SCIF) on the toy model: it reads what
    the model declares (its parameter block, `user_rows_are_local`)."""
    assert check_method(build_method("toy_ascent"), toy_run, tmp_path / "toy") is None
    assert check_method(cheap_method("scif"), toy_run, tmp_path / "scif") is None


@pytest.mark.slow
def test_the_toy_method_unlearns_the_toy_model_through_the_sequential_protocol(toy_run, tmp_path):
    rows = jobs.unlearn(toy_run, UnlearnConfig(method="toy_ascent", **SCENARIO), out=str(tmp_path / "scenario"), quiet=True)
    unlearned = [row for row in rows if row["eval_type"] == "unlearning"]
    assert [row["checkpoint_idx"] for row in unlearned] == [0, 1, 2, 3]
    assert all(np.isfinite(row["test_ndcg@10"]) for row in unlearned)
