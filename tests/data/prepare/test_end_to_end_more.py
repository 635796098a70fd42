"""The other preparers through the project's own path (as `test_end_to_end.py` does for
MovieLens and Ta-Feng): random raw files in the download's format are prepared, a sensitive
forget file is written by `data forget-set`, the loader reads the folder back (data_root pointing
at the output), a tiny model trains one epoch (BPR on the CF sets, GRU4Rec on Amazon Books'
sessions, Sets2Sets on Instacart, DNNTSP on both Dunnhumby forms) and the first request goes
through SCIF. Fast tier: Grocery and Goodreads (BPR) and Instacart (the one basket case: about
40 s on 2 loaded cores, mostly compilation); the others are in the slow tier."""

from __future__ import annotations

import numpy as np
import pytest

from erase_jax.config import load_config
from erase_jax.data.atomic import read_atomic
from erase_jax.data.basket_csv import read_basket_folder
from erase_jax.data.prepare import prepare_dataset, write_forget_sets
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_protocol
from tests.data.prepare import raw_files
from tests.data.prepare.test_end_to_end import unlearn_first_request

GROCERY = "amazon_reviews_grocery_and_gourmet_food"
MODEL = {
    "BPR": ["model=BPR", "train.batch_size=256", "model_params.embedding_size=8"],
    "GRU4Rec": ["model=GRU4Rec", "model_params={embedding_size: 8, hidden_size: 8}", "data.min_user_interactions=0",
                "data.min_item_interactions=0", "train.batch_size=64", "train.valid_metric=mrr@10"],
    "DNNTSP": ["model=DNNTSP", "model_params={embedding_size: 8, n_heads: 2}", "train.batch_size=8",
               "train.valid_metric=recall@1", "eval.topk=[1, 2]"],
    "Sets2Sets": ["model=Sets2Sets", "model_params={embedding_size: 8, hidden_size: 8}", "train.batch_size=8",
                  "train.valid_metric=recall@1", "eval.topk=[1, 2]"],
}
BASKET_MODELS = ("DNNTSP", "Sets2Sets")


def raw_grocery(tmp_path):
    return raw_files.random_grocery(tmp_path / "raw"), []


def raw_books(tmp_path):
    return raw_files.random_books(tmp_path / "raw"), []


def raw_goodreads(tmp_path):
    return raw_files.random_goodreads(tmp_path / "raw"), []


def raw_instacart(tmp_path):
    return raw_files.random_instacart(tmp_path / "raw"), ["user_share=1.0", "min_item_count=3"]


def raw_journey(tmp_path):
    return raw_files.random_journey(tmp_path / "raw"), []


def raw_sortofreal(tmp_path):
    return tmp_path / "raw", raw_files.random_sortofreal(tmp_path)


# case: (data set, raw files -> (folder, options), category, sensitive item tokens, model)
CASES = {
    "grocery": (GROCERY, raw_grocery, "meat", ["B01", "B02", "B03"], "BPR"),
    "goodreads": ("goodreads", raw_goodreads, "mental_health", ["0", "1", "2"], "BPR"),
    "books": ("amazon_reviews_books", raw_books, "explicit", ["B01", "B02", "B03", "B04"], "GRU4Rec"),
    "instacart": ("instacart", raw_instacart, "alcohol", None, "Sets2Sets"),
    "dunnhumby_journey": ("dunnhumby", raw_journey, "alcohol", None, "DNNTSP"),
    "dunnhumby_sortofreal": ("dunnhumby", raw_sortofreal, "alcohol", None, "DNNTSP"),
}
SLOW = {"books", "dunnhumby_journey", "dunnhumby_sortofreal"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in CASES])
def test_prepared_folder_trains_and_unlearns(tmp_path, case):
    name, raw, category, sensitive, model = CASES[case]
    folder, options = raw(tmp_path)
    data_root = tmp_path / "data"
    prepare_dataset(name, folder, data_root / name, options=options, quiet=True)
    written = read_basket_folder(data_root / name) if model in BASKET_MODELS else read_atomic(data_root / name)
    tokens = written.item_tokens[written.category_items(category)].tolist()
    if sensitive is None:  # the basket sets' new ids: the one alcohol product, bought by the odd users
        assert len(tokens) == 1 and len(np.unique(written.users[written.items == written.category_items(category)[0]])) == 12
    else:
        assert sorted(tokens) == sensitive
    fraction = 0.04 if model in BASKET_MODELS else 0.02  # the basket sets: >= 5 users, so >= 5 requests
    [forget_file] = write_forget_sets(data_root / name, "sensitive", [fraction], [2], category=category, quiet=True)

    config = load_config(None, [*MODEL[model], f"dataset={name}", f"data.data_root={data_root}", "train.epochs=1",
                                "seed=2"])
    result = train_run(config, tmp_path / "run", quiet=True)
    assert result["epochs"] == 1

    experiment, params = load_run(tmp_path / "run")
    assert len(experiment.data.interactions) == len(written)  # every row survives the loader's filters
    unlearn = UnlearnConfig(method="scif", scenario="sensitive", category=category, forget_file=str(forget_file))
    protocol = build_protocol(experiment, unlearn)
    inter = experiment.data.interactions
    sensitive_users = np.unique(inter.users[np.isin(inter.items, inter.category_items(category))])
    assert len(protocol.forget_set) >= 1 and np.isin(protocol.forget_set.users, sensitive_users).all()
    assert unlearn_first_request(experiment, params, protocol) > 0
