"""Prepared 30Music and #nowplaying folders through the project's own path: the loader reads
them (data_root pointing at the output), a tiny GRU4Rec trains one epoch on one sequence per user,
and the first request of the forget file that `data forget-set` wrote (the "reach" rule; for
30music only users with >= 3 sensitive and >= 3 other rows) goes through SCIF."""

from __future__ import annotations

import numpy as np
import pytest

from erase_jax.config import load_config
from erase_jax.data.atomic import read_atomic
from erase_jax.data.forget_files import read_forget_file
from erase_jax.data.prepare import prepare_dataset, write_forget_sets
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_protocol
from tests.data.prepare.raw_files import random_nowp, random_thirtymusic
from tests.data.prepare.test_end_to_end import unlearn_first_request

RAW = {"30music": random_thirtymusic, "nowp": random_nowp}


# both about 25 s after compilation on 2 shared cores: #nowplaying in the slow tier, 30Music in the fast one
@pytest.mark.parametrize("name", ["30music", pytest.param("nowp", marks=pytest.mark.slow)])
def test_prepared_sessions_train_and_unlearn(tmp_path, name):
    data_root = tmp_path / "data"
    prepare_dataset(name, RAW[name](tmp_path / "raw"), data_root / name, quiet=True)
    written = read_atomic(data_root / name)
    assert len(written) == 40 * 3 * 6 and len(np.unique(written.sessions)) == 40 * 3
    [forget_file] = write_forget_sets(data_root / name, "sensitive", [0.05], [2], category="explicit", quiet=True)
    forget = read_forget_file(forget_file, written, "sensitive", "explicit", 0.05, 2)
    explicit = written.category_items("explicit")
    assert sorted(written.item_tokens[explicit].tolist()) == sorted(
        {"30music": ["1", "2", "3", "4"], "nowp": ["mbid-1", "mbid-2", "mbid-3", "mbid-4"]}[name])
    per_user = np.bincount(written.users[np.isin(written.items, explicit)], minlength=written.n_users)
    assert forget.removal_mask(written).sum() >= int(0.05 * len(written))  # "reach": at least T rows
    if name == "30music":
        assert (per_user[forget.users] >= 3).all()

    config = load_config(None, ["model=GRU4Rec", "model_params={embedding_size: 8, hidden_size: 8}", f"dataset={name}",
                                f"data.data_root={data_root}", "data.min_user_interactions=0",
                                "data.min_item_interactions=0", "train.epochs=1", "train.batch_size=64",
                                "train.valid_metric=mrr@10", "seed=2"])
    result = train_run(config, tmp_path / "run", quiet=True)
    assert result["epochs"] == 1 and np.isfinite(result["test"]["mrr@10"])

    experiment, params = load_run(tmp_path / "run")
    assert len(experiment.data.interactions) == len(written)
    unlearn = UnlearnConfig(method="scif", scenario="sensitive", category="explicit", forget_file=str(forget_file))
    assert unlearn_first_request(experiment, params, build_protocol(experiment, unlearn)) > 0
