"""`erase-jax data forget-set`: the original's file names and formats, drawn by the scenario
functions the protocol uses, with the data set's recorded defaults; and the `data` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from erase_jax.cli import main
from erase_jax.data.atomic import DataFormatError, read_atomic
from erase_jax.data.basket_csv import read_basket_folder
from erase_jax.data.forget_files import read_basket_forget_file, read_forget_file
from erase_jax.data.prepare import prepare_dataset, write_forget_sets
from erase_jax.data.scenarios import random_forget_set, sensitive_forget_set
from erase_jax.data.scenarios.baskets import sensitive_basket_forget_set
from tests.data.prepare.raw_files import random_movielens, tafeng_with_alcohol


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    root = tmp_path_factory.mktemp("forget")
    prepare_dataset("movielens", random_movielens(root / "raw"), root / "movielens", quiet=True)
    return root / "movielens"


def same_requests(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("users", "item_offsets", "items"))


def test_sensitive_files_are_the_scenario_s_forget_sets(movielens, tmp_path):
    paths = write_forget_sets(movielens, "sensitive", [0.02, 0.05], [2, 3], category="health", out=tmp_path, quiet=True)
    assert [p.name for p in paths] == [
        f"movielens_unlearn_pairs_sensitive_category_health_seed_{s}_unlearning_fraction_{f}.inter"
        for f in (0.02, 0.05) for s in (2, 3)]
    inter = read_atomic(movielens)
    for path, (fraction, seed) in zip(paths, [(0.02, 2), (0.02, 3), (0.05, 2), (0.05, 3)]):
        expected = sensitive_forget_set(inter, "health", fraction, seed, rating_threshold=3.5, rule="fit")
        assert same_requests(read_forget_file(path, inter, "sensitive", "health", fraction, seed), expected)
        header, *lines = path.read_text().splitlines()
        assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
        assert all(float(line.split("\t")[2]) >= 3.5 for line in lines)  # MovieLens' recorded threshold
        assert {line.split("\t")[1] for line in lines} <= {"1", "2", "3"}  # the health movies
    assert {p.parent for p in paths} == {tmp_path}


def test_threshold_rule_and_random_options(movielens):
    inter = read_atomic(movielens)
    [path] = write_forget_sets(movielens, "sensitive", [0.05], [7], category="health", rating_threshold=None,
                               rule="reach", quiet=True)
    expected = sensitive_forget_set(inter, "health", 0.05, 7, rating_threshold=None, rule="reach")
    assert same_requests(read_forget_file(path, inter, "sensitive", "health", 0.05, 7), expected)
    [users, rows] = [write_forget_sets(movielens, "random", [0.05], [2], random_unit=unit, quiet=True)[0]
                     for unit in ("users", "interactions")]
    assert users.name == "movielens_unlearn_pairs_random_users_seed_2_unlearning_fraction_0.05.inter"
    assert rows.name == "movielens_unlearn_pairs_random_seed_2_unlearning_fraction_0.05.inter"
    expected = random_forget_set(inter, 0.05, 2, unit="interactions")
    assert same_requests(read_forget_file(rows, inter, "random", None, 0.05, 2), expected)


def test_a_failing_combination_writes_nothing(movielens, tmp_path):
    with pytest.raises(ValueError, match=r"movielens, sensitive_category_health, fraction 1e-05, seed 3: .*gives .* = 0"):
        write_forget_sets(movielens, "sensitive", [0.05, 1e-5], [3], category="health", out=tmp_path, quiet=True)
    with pytest.raises(ValueError, match=r"category 'violence' not present; known: \[.*'Comedy'.*'health'\]"):
        write_forget_sets(movielens, "sensitive", [0.05], [3], category="violence", out=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="writes the sensitive and random scenarios, not 'spam'"):
        write_forget_sets(movielens, "spam", [0.05], [3], out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_basket_forget_file_lists_user_ids_and_reads_back(tmp_path):
    """Ta-Feng with a given alcohol list: customers 1-6 buy A1 on two of their six days."""
    out = tmp_path / "tafeng"
    prepare_dataset("tafeng", tmp_path / "raw", out, options=[tafeng_with_alcohol(tmp_path)], quiet=True)
    [path] = write_forget_sets(out, "sensitive", [0.05], [5], category="alcohol", quiet=True)
    assert path.name == "tafeng_unlearn_pairs_sensitive_category_alcohol_seed_5_unlearning_fraction_0.05.json"
    inter = read_basket_folder(out)
    expected = sensitive_basket_forget_set(inter, "alcohol", 0.05, 5)
    users = json.loads(path.read_text())
    assert users == inter.user_tokens[expected.users].tolist() and len(users) == 4  # T = 7, 2 rows a user: "reach"
    assert set(users) <= {"0", "1", "2", "3", "4", "5"}  # re-indexed customers 1-6
    assert same_requests(read_basket_forget_file(path, inter, "sensitive", "alcohol", 0.05, 5), expected)
    everything = read_basket_forget_file(path, inter, "random", None, 0.05, 5)
    assert np.array_equal(everything.users, expected.users)
    assert [len(everything.request_items(k)) for k in range(len(everything))] == [3] * 4  # C1, C2, A1


def test_bad_basket_forget_files(tmp_path):
    out = tmp_path / "tafeng"
    prepare_dataset("tafeng", tmp_path / "raw", out, options=[tafeng_with_alcohol(tmp_path)], quiet=True)
    inter = read_basket_folder(out)
    for text, problem in (('["0", "99"]', "user '99' is not in"), ("{}", "expected a non-empty JSON list"),
                          ("[0, ", "not a JSON list of user ids")):
        (tmp_path / "f.json").write_text(text)
        with pytest.raises(DataFormatError, match=f"f.json: {problem}"):
            read_basket_forget_file(tmp_path / "f.json", inter, "sensitive", "alcohol", 0.05, 5)
    (tmp_path / "f.pkl").write_bytes(b"")
    with pytest.raises(DataFormatError, match="pickled forget files are not read"):
        read_basket_forget_file(tmp_path / "f.pkl", inter, "sensitive", "alcohol", 0.05, 5)
    (tmp_path / "f.json").write_text('["0", "11"]')  # customer 12 bought no alcohol
    with pytest.warns(UserWarning, match="1 listed user.* without an item of 'alcohol'"):
        assert len(read_basket_forget_file(tmp_path / "f.json", inter, "sensitive", "alcohol", 0.05, 5)) == 1


def test_data_commands(tmp_path, capsys):
    raw = random_movielens(tmp_path / "raw", n_users=30)
    out = tmp_path / "ml"
    assert main(["data", "prepare", "movielens", "--raw", str(raw), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("ml: 30 users, 20 items, 360 interactions")
    assert main(["data", "forget-set", str(out), "--scenario", "sensitive:health", "--fraction", "0.05",
                 "--seed", "2", "11", "--rating-threshold", "none", "--quiet"]) == 0
    written = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in written] == [
        f"ml_unlearn_pairs_sensitive_category_health_seed_{s}_unlearning_fraction_0.05.inter" for s in (2, 11)]
    assert main(["data", "prepare", "movielens", "--raw", str(raw), "--out", str(out), "--quiet"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["data", "prepare", "goodreadz", "--raw", str(raw)]) == 2
    assert "unknown data set preparer 'goodreadz'" in capsys.readouterr().err
    assert main(["data", "list"]) == 0
    assert "movielens (CF): an unzipped release" in capsys.readouterr().out
