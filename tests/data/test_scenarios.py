"""Forget-set scenarios, forget files, the request stream and the retain sampler.

Hand-made examples check the selection rules exactly; ML-100K checks the sensitive scenario
against the reference forget set of the unlearning-algorithms spec (300 rows, 98 users).
"""

import dataclasses
import json
import math
import random

import numpy as np
import pytest

from erase_jax.data import forget_files
from erase_jax.data.interactions import Interactions, from_tokens
from erase_jax.data.scenarios import (
    ForgetSet,
    forget_set_from_pairs,
    quarter_checkpoints,
    random_forget_set,
    request_order,
    sensitive_forget_set,
    spam_users,
    target_rows,
)
from erase_jax.data.user_rows import UserRows
from erase_jax.unlearn.protocol.requests import (
    RequestStream,
    RetainSampler,
    retain_budget,
    retain_pool_factor,
)
from tests.conftest import require_dataset


def make_inter(user_tokens, item_tokens, *, ratings=None, timestamps=None, categories=None) -> Interactions:
    inter = from_tokens(user_tokens, item_tokens, ratings=ratings, timestamps=timestamps, name="toy")
    if categories is not None:
        ids = {name: np.sort(inter.item_ids(tokens)) if tokens else np.zeros(0, np.int32)
               for name, tokens in categories.items()}
        inter = dataclasses.replace(inter, item_categories=ids)
    return inter


def tokens_of(inter: Interactions, forget_set: ForgetSet) -> list[str]:
    return [str(t) for t in inter.user_tokens[forget_set.users]]


# ---------------------------------------------------------------------------------------------
# checkpoints and request order


@pytest.mark.parametrize(
    "n, expected", [(5, [1, 2, 3, 4]), (10, [2, 5, 7, 9]), (100, [25, 50, 75, 99]), (98, [24, 49, 73, 97])]
)
def test_quarter_checkpoints(n, expected):
    assert quarter_checkpoints(n) == expected


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_quarter_checkpoints_refuse_fewer_than_five_requests(n):
    with pytest.raises(ValueError, match="repeats indices below 5 requests.*larger forget fraction"):
        quarter_checkpoints(n)


def test_request_order_numeric_when_every_token_is_an_integer():
    assert request_order(["10", "9", "100", "-1"]).tolist() == [3, 1, 0, 2]


def test_request_order_lexicographic_otherwise():
    assert request_order(["b", "a10", "a9"]).tolist() == [1, 2, 0]
    assert request_order(["10", "9", "x"]).tolist() == [0, 1, 2]  # "10" < "9" < "x" as text


def test_forget_set_from_pairs_groups_by_user_in_request_order():
    inter = make_inter(["10", "9", "10", "2"], ["a", "b", "c", "a"])
    users, items = inter.users[[0, 2, 2, 1, 3]], inter.items[[0, 2, 2, 1, 3]]
    fs = forget_set_from_pairs(inter, users, items, scenario="random", category=None, fraction=0.5, seed=0)
    assert tokens_of(inter, fs) == ["2", "9", "10"]
    assert [inter.item_tokens[fs.request_items(r)].tolist() for r in range(3)] == [["a"], ["b"], ["a", "c"]]


# ---------------------------------------------------------------------------------------------
# sensitive scenario

SENSITIVE_COUNTS = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}  # 21 candidate rows


def sensitive_toy() -> Interactions:
    """100 rows: user x has SENSITIVE_COUNTS[x] rows on sensitive items s1.. plus two plain rows;
    user g fills up with 67 plain rows."""
    users, items = [], []
    for user, count in SENSITIVE_COUNTS.items():
        users += [user] * (count + 2)
        items += [f"s{k}" for k in range(1, count + 1)] + ["p1", "p2"]
    users += ["g"] * 67
    items += [f"p{k % 9 + 1}" for k in range(67)]
    sensitive = [f"s{k}" for k in range(1, 7)]
    return make_inter(users, items, ratings=np.full(100, 5.0), categories={"Horror": sensitive, "Empty": []})


def test_the_hand_example_shuffle():
    # Seed 2 shuffles the users in token order a..f into c, d, b, e, f, a (3, 4, 2, 5, 6, 1
    # candidate rows; running totals 3, 7, 9, 14, 20, 21). All expectations below follow.
    order = sorted(SENSITIVE_COUNTS)
    random.seed(2)
    random.shuffle(order)
    assert order == ["c", "d", "b", "e", "f", "a"]


@pytest.mark.parametrize(
    "fraction, target, expected_users",
    [
        (0.09, 9, "bcd"),  # c, d, b reach 9 exactly: stop
        (0.11, 11, "bcd"),  # e would give 14: |14-11| = 3 is not closer than |9-11| = 2
        (0.12, 12, "bcde"),  # e gives 14: |14-12| = 2 is closer than |9-12| = 3
        (0.05, 5, "c"),  # d would give 7: |7-5| = 2 ties |3-5| = 2, not strictly closer
        (0.02, 2, "c"),  # c alone overshoots to 3: |3-2| = 1 is closer than |0-2| = 2
        (0.3, 30, "abcdef"),  # T > 21 candidate rows: T := 21, everybody
    ],
)
def test_sensitive_fit_rule(fraction, target, expected_users):
    inter = sensitive_toy()
    assert target_rows(len(inter), fraction) == target
    fs = sensitive_forget_set(inter, "Horror", fraction, seed=2, rule="fit")
    assert sorted(tokens_of(inter, fs)) == list(expected_users)
    assert fs.removal_mask(inter).sum() == sum(SENSITIVE_COUNTS[u] for u in expected_users)
    assert (fs.scenario, fs.category, fs.fraction, fs.seed) == ("sensitive", "Horror", fraction, 2)


@pytest.mark.parametrize("fraction, expected_users", [(0.05, "cd"), (0.09, "bcd"), (0.1, "bcde"), (0.3, "abcdef")])
def test_sensitive_reach_rule(fraction, expected_users):
    inter = sensitive_toy()
    fs = sensitive_forget_set(inter, "Horror", fraction, seed=2, rule="reach")
    assert sorted(tokens_of(inter, fs)) == list(expected_users)


def test_sensitive_forget_items_are_the_users_sensitive_items():
    inter = sensitive_toy()
    fs = sensitive_forget_set(inter, "Horror", 0.09, seed=2)
    assert tokens_of(inter, fs) == ["b", "c", "d"]  # request order, not selection order
    assert inter.item_tokens[fs.request_items(2)].tolist() == ["s1", "s2", "s3", "s4"]


@pytest.mark.parametrize("order, expected_list", [
    ("token", ["10", "100", "9"]), ("parsed", ["9", "10", "100"]), ("first_seen", ["100", "9", "10"]),
])
def test_pre_shuffle_order_decides_who_is_drawn(order, expected_list):
    inter = make_inter(["100", "9", "10"], ["s", "s", "s"], categories={"S": ["s"]})
    shuffled = list(expected_list)
    random.seed(5)
    random.shuffle(shuffled)
    fs = sensitive_forget_set(inter, "S", 1 / 3, seed=5, rule="reach", pre_shuffle_order=order)
    assert tokens_of(inter, fs) == [shuffled[0]]


def test_rating_threshold_keeps_only_high_rated_sensitive_rows():
    inter = make_inter(["a", "a", "a", "b"], ["s1", "s2", "p", "s1"], ratings=[5, 2, 5, 4],
                       categories={"S": ["s1", "s2"]})
    fs = sensitive_forget_set(inter, "S", 0.25, seed=0, rating_threshold=3.5, rule="reach")
    assert len(fs) == 1 and inter.item_tokens[fs.request_items(0)].tolist() == ["s1"]


def test_sensitive_errors():
    inter = sensitive_toy()
    with pytest.raises(ValueError, match="= 0 forget rows.*smallest fraction that gives one row is 0.01"):
        sensitive_forget_set(inter, "Horror", 0.001, seed=2)
    with pytest.raises(KeyError, match="'Comedy' not present; known: \\['Empty', 'Horror'\\]"):
        sensitive_forget_set(inter, "Comedy", 0.1, seed=2)
    with pytest.raises(ValueError, match="category 'Empty' has no items"):
        sensitive_forget_set(inter, "Empty", 0.1, seed=2)
    with pytest.raises(ValueError, match="no row has a sensitive item of Horror with rating >= 6"):
        sensitive_forget_set(inter, "Horror", 0.1, seed=2, rating_threshold=6)
    with pytest.raises(ValueError, match="selection is empty"):  # c alone: |3-1| is not closer than |0-1|
        sensitive_forget_set(inter, "Horror", 0.01, seed=2)


def test_target_rows_smallest_fraction_survives_rounding():
    with pytest.raises(ValueError, match="smallest fraction") as error:
        target_rows(49, 0.01)
    smallest = float(str(error.value).rsplit(" ", 1)[1])
    assert int(49 * smallest) == 1


# ---------------------------------------------------------------------------------------------
# removal mask


def test_removal_mask_removes_every_row_of_a_forget_pair():
    #         0    1    2    3    4    5    6
    users = ["u", "u", "u", "v", "v", "w", "u"]
    items = ["x", "y", "z", "x", "y", "x", "x"]  # row 6 repeats (u, x)
    inter = make_inter(users, items)
    u, v = inter.user_ids(["u", "v"])
    x, y = inter.item_ids(["x", "y"])
    fs = ForgetSet(users=[u, v], item_offsets=[0, 1, 3], items=[x, x, y],
                   scenario="sensitive", category=None, fraction=0.1, seed=0)
    assert np.flatnonzero(fs.removal_mask(inter, 1)).tolist() == [0, 6]
    assert np.flatnonzero(fs.removal_mask(inter)).tolist() == [0, 3, 4, 6]
    assert not fs.removal_mask(inter, 0).any()
    assert fs.rows_of_request(inter, 1).tolist() == [3, 4]


def test_forget_set_validates_its_csr():
    meta = dict(scenario="random", category=None, fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="at least one item"):
        ForgetSet(users=[0, 1], item_offsets=[0, 1, 1], items=[3], **meta)
    with pytest.raises(ValueError, match="more than one request"):
        ForgetSet(users=[0, 0], item_offsets=[0, 1, 2], items=[3, 4], **meta)
    with pytest.raises(ValueError, match="scenario"):
        ForgetSet(users=[0], item_offsets=[0, 1], items=[3], **{**meta, "scenario": "popular"})


# ---------------------------------------------------------------------------------------------
# random scenario


def test_random_users_takes_whole_users_with_the_fit_rule():
    inter = sensitive_toy()  # a..f have 3..8 rows, g has 67
    fs = random_forget_set(inter, 0.1, seed=3, unit="users")
    order = sorted("abcdefg")
    random.seed(3)
    random.shuffle(order)
    sizes = {u: SENSITIVE_COUNTS.get(u, 65) + 2 for u in "abcdefg"}
    taken, total = [], 0
    for user in order:  # the fit rule on T = 10, by hand
        if total + sizes[user] > 10:
            if abs(total + sizes[user] - 10) < abs(total - 10):
                taken.append(user)
            break
        taken.append(user)
        total += sizes[user]
        if total == 10:
            break
    assert sorted(tokens_of(inter, fs)) == sorted(taken)
    mask = fs.removal_mask(inter)
    assert np.array_equal(mask, np.isin(inter.users, fs.users))  # all rows of the chosen users


def test_random_interactions_samples_rows_like_pandas_sample():
    inter = sensitive_toy()
    fs = random_forget_set(inter, 0.07, seed=4, unit="interactions")
    rows = np.random.RandomState(4).choice(100, 7, replace=False)  # DataFrame.sample(n=7, random_state=4)
    assert fs.removal_mask(inter)[rows].all()
    expected = forget_set_from_pairs(inter, inter.users[rows], inter.items[rows],
                                     scenario="random", category=None, fraction=0.07, seed=4)
    assert np.array_equal(fs.users, expected.users) and np.array_equal(fs.items, expected.items)
    with pytest.raises(ValueError, match="unit"):
        random_forget_set(inter, 0.07, seed=4, unit="sessions")


# ---------------------------------------------------------------------------------------------
# spam scenario


def popularity_toy(user_prefix="") -> Interactions:
    """40 users with 12..25 distinct items each out of 100 Zipf-popular items, 3 distinct
    timestamps per user step, ratings 1..5."""
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 101)
    users, items, times = [], [], []
    for user in range(40):
        size = rng.integers(12, 26)
        chosen = rng.choice(100, size, replace=False, p=weights / weights.sum())
        users += [f"{user_prefix}{user + 1}"] * size
        items += [f"i{k}" for k in chosen]
        times += (1000 + 50 * user + np.cumsum(rng.integers(1, 30, size))).tolist()
    ratings = rng.integers(1, 6, len(users)).astype(float)
    return make_inter(users, items, ratings=ratings, timestamps=times)


def test_spam_users_bandwagon_profiles():
    inter = popularity_toy()
    poisoned, fs = spam_users(inter, ratio=0.1, n_target_items=5, seed=7)
    n_fake = math.ceil(0.1 * 40 / 0.9)
    assert n_fake == 5 and len(fs) == n_fake and fs.scenario == "spam"
    # original rows first, untouched
    assert np.array_equal(poisoned.users[: len(inter)], inter.users)
    assert np.array_equal(poisoned.timestamps[: len(inter)], inter.timestamps)
    assert poisoned.user_tokens[fs.users].tolist() == ["41", "42", "43", "44", "45"]  # max token + k
    fake_rows = np.arange(len(inter), len(poisoned))
    assert np.array_equal(np.flatnonzero(fs.removal_mask(poisoned)), fake_rows)

    counts = np.bincount(inter.items, minlength=inter.n_items)
    by_popularity = np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]
    n_share = int(0.2 * len(by_popularity))
    least, most = by_popularity[-n_share:], by_popularity[:n_share]
    assert len(fs.target_items) == 5 and len(np.unique(fs.target_items)) == 5
    assert np.isin(fs.target_items, least).all()
    fake_items = poisoned.items[fake_rows]
    is_target = np.isin(fake_items, fs.target_items)
    assert np.isin(fake_items[~is_target], most).all()

    real_sizes = np.bincount(inter.users)
    fake_users = poisoned.users[fake_rows]
    for r, user in enumerate(fs.users):
        mine = fake_users == user
        profile = fake_items[mine]
        assert real_sizes.min() <= mine.sum() <= real_sizes.max()
        assert len(np.unique(profile)) == len(profile)  # no item twice within a user
        assert np.isin(fs.target_items, profile).all()  # every target by default
        times = poisoned.timestamps[fake_rows][mine]
        assert np.all(np.diff(times) >= 1) and inter.timestamps.min() <= times[0] <= inter.timestamps.max()
        assert np.array_equal(fs.request_items(r), np.unique(profile))
    assert np.all(poisoned.ratings[fake_rows][is_target] == 5)
    assert np.isin(poisoned.ratings[fake_rows][~is_target], inter.ratings).all()


def test_spam_users_is_deterministic_and_names_fakes():
    inter = popularity_toy(user_prefix="user")
    first, fs_first = spam_users(inter, 0.1, n_target_items=5, seed=3, targets_per_user=2)
    again, fs_again = spam_users(inter, 0.1, n_target_items=5, seed=3, targets_per_user=2)
    other, _ = spam_users(inter, 0.1, n_target_items=5, seed=4, targets_per_user=2)
    for field in ("users", "items", "timestamps", "ratings"):
        assert np.array_equal(getattr(first, field), getattr(again, field))
    assert np.array_equal(fs_first.items, fs_again.items)
    assert not np.array_equal(first.items[len(inter):], other.items[len(inter):])
    assert first.user_tokens[fs_first.users].tolist() == [f"fraud_{k}" for k in range(1, 6)]
    fake_items = first.items[len(inter):]
    n_targets = np.isin(fake_items, fs_first.target_items).sum()
    assert n_targets == 2 * 5  # targets_per_user = 2


def test_spam_users_literature_bandwagon_profiles():
    """selected_items > 0: every fake holds the targets, the same most popular items and fillers
    from the whole catalogue; 0 keeps ERASE's profiles draw for draw."""
    inter = popularity_toy()
    poisoned, fs = spam_users(inter, ratio=0.2, n_target_items=5, seed=7, selected_items=3)
    counts = np.bincount(inter.items, minlength=inter.n_items)
    by_popularity = np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]
    selected, most = by_popularity[:3], by_popularity[: int(0.2 * len(by_popularity))]
    fake_rows = np.arange(len(inter), len(poisoned))
    fake_items, fake_users = poisoned.items[fake_rows], poisoned.users[fake_rows]
    fillers = fake_items[~np.isin(fake_items, np.concatenate([fs.target_items, selected]))]
    for user in fs.users:
        profile = fake_items[fake_users == user]
        assert len(np.unique(profile)) == len(profile)
        assert np.isin(fs.target_items, profile).all() and np.isin(selected, profile).all()
    assert len(fillers) and not np.isin(fillers, most).all()  # fillers beyond the popular 20 %
    assert np.isin(fillers, np.flatnonzero(counts)).all()  # only items the data has
    erase, _ = spam_users(inter, ratio=0.2, n_target_items=5, seed=7)
    default, _ = spam_users(inter, ratio=0.2, n_target_items=5, seed=7, selected_items=0)
    assert np.array_equal(erase.items, default.items)
    with pytest.raises(ValueError, match="selected_items must be an integer"):
        spam_users(inter, 0.2, n_target_items=5, seed=7, selected_items=-1)


def test_spam_users_needs_enough_unpopular_items():
    with pytest.raises(ValueError, match="fewer than n_target_items = 30"):
        spam_users(popularity_toy(), 0.1, n_target_items=30, seed=0)


# ---------------------------------------------------------------------------------------------
# forget files


def test_forget_file_names():
    assert forget_files.forget_file_name("ml-100k", forget_files.sensitive_method("Horror"), 2, 0.0001) == (
        "ml-100k_unlearn_pairs_sensitive_category_Horror_seed_2_unlearning_fraction_0.0001.inter")
    assert forget_files.forget_file_name("ml", "random", 3, 1e-05).endswith("_seed_3_unlearning_fraction_1e-05.inter")
    assert forget_files.spam_inter_file_name("nowp", 0.01, 5) == (
        "nowp_fraud_sessions_bandwagon_unpopular_ratio_0.01_seed_5.inter")
    assert forget_files.spam_metadata_file_name("nowp", 0.01, 5) == (
        "nowp_fraud_metadata_bandwagon_unpopular_ratio_0.01_seed_5.json")


def test_forget_file_round_trip(tmp_path):
    inter = sensitive_toy()
    fs = sensitive_forget_set(inter, "Horror", 0.12, seed=2)
    path = tmp_path / forget_files.forget_file_name("toy", "sensitive_category_Horror", 2, 0.12)
    forget_files.write_forget_file(path, inter, fs)
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float"
    assert len(lines) - 1 == fs.removal_mask(inter).sum() == 14
    back = forget_files.read_forget_file(path, inter, "sensitive", "Horror", 0.12, 2)
    for field in ("users", "item_offsets", "items"):
        assert np.array_equal(getattr(back, field), getattr(fs, field))
    assert (back.scenario, back.category, back.fraction, back.seed) == ("sensitive", "Horror", 0.12, 2)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_forget_file_merges_users_and_reads_positionally(tmp_path):
    inter = make_inter(["7", "7", "12", "7"], ["x", "y", "x", "z"])
    path = tmp_path / "f.inter"
    path.write_text("uid:token\tiid:token\n12\tx\n7\tz\n\n7\tx\n7\tz\n")
    fs = forget_files.read_forget_file(path, inter, "random", None, 0.5, 0)
    assert tokens_of(inter, fs) == ["7", "12"]
    assert inter.item_tokens[fs.request_items(0)].tolist() == ["x", "z"]


@pytest.mark.parametrize("body, message", [
    ("7\tx\n99\tx\n", "line 3: unknown user '99'"),
    ("7\tx\n\n7\tnope\n", "line 4: unknown item 'nope'"),
    ("", "empty forget set"),
])
def test_forget_file_errors_name_file_line_and_token(tmp_path, body, message):
    inter = make_inter(["7", "7"], ["x", "y"])
    path = tmp_path / "bad.inter"
    path.write_text("user_id:token\titem_id:token\n" + body)
    with pytest.raises(ValueError, match=message) as error:
        forget_files.read_forget_file(path, inter, "random", None, 0.5, 0)
    assert str(path) in str(error.value)


def test_spam_files_round_trip(tmp_path):
    inter = popularity_toy()
    poisoned, fs = spam_users(inter, 0.1, n_target_items=5, seed=7)
    inter_path, metadata_path = forget_files.write_spam_files(tmp_path, "toy", 0.1, 7, poisoned, fs)
    metadata = json.loads(metadata_path.read_text())
    assert (metadata["original_sessions"], metadata["fraud_sessions"], metadata["n_target_items"]) == (40, 5, 5)
    assert np.array_equal(forget_files.read_spam_metadata(metadata_path, poisoned), fs.target_items)
    back = forget_files.read_forget_file(inter_path, poisoned, "spam", None, 0.1, 7, target_items=fs.target_items)
    assert np.array_equal(back.users, fs.users) and np.array_equal(back.items, fs.items)
    metadata["target_items"].append("ghost")
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="target item 'ghost'"):
        forget_files.read_spam_metadata(metadata_path, poisoned)


# ---------------------------------------------------------------------------------------------
# request stream and retain sampler


def test_request_stream_batches_and_checkpoints():
    inter = make_inter([str(u) for u in range(16)], ["x"] * 16)
    fs = forget_set_from_pairs(inter, inter.users, inter.items, scenario="random", category=None, fraction=1.0, seed=0)
    single = RequestStream(fs)
    assert single.checkpoint_batches == [4, 8, 12, 15]
    assert single.users_through(4).tolist() == fs.users[:5].tolist()
    assert [b.checkpoint for b in single if b.checkpoint is not None] == [0, 1, 2, 3]
    batched = RequestStream(fs, batch_size=3)
    assert batched.n_batches == 6 and batched.checkpoint_batches == [1, 3, 4, 5]
    assert batched.batch(5).requests.tolist() == [15]
    assert batched.removal_mask_through(inter, 1).sum() == 6
    with pytest.raises(ValueError, match="too few"):
        RequestStream(fs, batch_size=4)


def sampler_toy() -> tuple[Interactions, UserRows]:
    # user k has k + 1 rows (user 0: 1 row ... user 9: 10 rows)
    users = np.repeat(np.arange(10), np.arange(1, 11))
    inter = make_inter([str(u) for u in users], ["x"] * len(users))
    return inter, UserRows.from_rows(inter)


def test_retain_sampler_walks_the_pool_with_one_cursor():
    _, user_rows = sampler_toy()
    state = {"pool": np.array([3, 0, 5, 3, 9, 1]), "cursor": 0, "n_reshuffles": 0, "seed": 0}
    sampler = RetainSampler.from_state(user_rows, state)
    assert sampler.sample_users(5, excluded_users=[0]).tolist() == [3, 5]  # 4 + 6 rows >= 5
    assert int(sampler.state_dict()["cursor"]) == 3  # the skipped user 0 is passed over
    # user 3 again (a new call may take it again), then 9: 4 + 10 >= 12
    assert sampler.sample_users(12, excluded_users=[0]).tolist() == [3, 9]
    rows = sampler.sample(3, excluded_users=[5])  # user 1 (2 rows), then the pool is reshuffled
    assert int(sampler.state_dict()["n_reshuffles"]) == 1
    assert len(rows) >= 3 and rows[:2].tolist() == user_rows.gather([1]).tolist()


def test_retain_sampler_excludes_users_reaches_the_budget_and_resumes():
    inter, user_rows = sampler_toy()
    sampler = RetainSampler(user_rows, n_requests=1, seed=11)
    assert len(sampler.state_dict()["pool"]) == 100  # 10 permutations >= 96 entries
    twin = RetainSampler(user_rows, n_requests=1, seed=11)
    excluded = [2, 7]
    for call in range(120):  # about 2.5 users per call: several wrap-arounds
        need = 7 + call % 9
        users = sampler.sample_users(need, excluded)
        assert np.array_equal(users, twin.sample_users(need, excluded))
        assert not np.isin(users, excluded).any() and len(np.unique(users)) == len(users)
        sizes = user_rows.counts[users]
        assert sizes.sum() >= need and sizes[:-1].sum() < need
    assert int(sampler.state_dict()["n_reshuffles"]) >= 2
    resumed = RetainSampler.from_state(user_rows, sampler.state_dict())
    for need in (5, 30, 12):
        assert np.array_equal(resumed.sample(need, excluded), sampler.sample(need, excluded))
    assert set(inter.users[sampler.sample(1000, excluded)]) == set(range(10)) - set(excluded)  # capped


def test_retain_sampler_uses_only_candidate_rows_and_fails_when_nobody_is_left():
    inter, _ = sampler_toy()
    train_rows = np.flatnonzero(inter.users % 2 == 0)  # odd users have no candidate rows
    sampler = RetainSampler(UserRows.from_rows(inter, train_rows), n_requests=1, seed=0)
    rows = sampler.sample(20, excluded_users=[0])
    assert np.isin(rows, train_rows).all() and not np.isin(inter.users[rows], [0]).any()
    with pytest.raises(ValueError, match="no retain user left"):
        sampler.sample(5, excluded_users=[0, 2, 4, 6, 8])


def test_retain_budget_rules():
    from erase_jax.unlearn import build_method

    budget = lambda name, f, n, **options: retain_budget(build_method(name, **options), f, n)
    assert budget("scif", 3, 100_000) == 32
    assert budget("kookmin", 10, 100_000) == 80
    assert budget("fanchuan", 10, 100_000) == 640
    assert budget("gif", 10, 100_000) == 128
    assert budget("ceu", 10, 100_000) == budget("idea", 10, 100_000) == 1024
    assert budget("seif", 10, 100_000) == 320
    assert budget("seif", 10, 100_000, seif_repair_epochs=1) == 80
    assert budget("fanchuan", 1000, 100_000) == 10_000  # capped at 10 % of all rows
    assert retain_pool_factor(build_method("scif")) == 96 and retain_pool_factor(build_method("fanchuan")) == 768


@pytest.fixture(scope="module")
def ml100k(data_root):
    from erase_jax.data.atomic import read_atomic

    return read_atomic(require_dataset(data_root, "ml-100k"))


def test_ml100k_horror_matches_the_reference_forget_set(ml100k):
    # Reference (unlearning-algorithms spec): Horror, rating >= 3.5, f = 0.003, seed 2 ->
    # 300 forget rows from 98 users. T = int(100000 * 0.003) = 300 out of 2487 candidate
    # rows of 608 users.
    fs = sensitive_forget_set(ml100k, "Horror", 0.003, seed=2, rating_threshold=3.5)
    assert (len(fs), int(fs.removal_mask(ml100k).sum())) == (98, 300)
    assert quarter_checkpoints(len(fs)) == [24, 49, 73, 97]
    assert np.all(np.diff(ml100k.user_tokens[fs.users].astype(int)) > 0)  # numeric request order
    # the other pre-shuffle orders draw other users for the same seed
    sizes = {order: (len(f), int(f.removal_mask(ml100k).sum())) for order in ("first_seen", "parsed")
             for f in [sensitive_forget_set(ml100k, "Horror", 0.003, 2, 3.5, pre_shuffle_order=order)]}
    assert sizes == {"first_seen": (71, 307), "parsed": (77, 298)}
