"""The Amazon Reviews 2023 preparers (Grocery CF, Books SBR) on hand-made gzip JSON lines.

Checked: the rows (exact duplicates dropped, the same pair at another time kept, the 5-core,
ties in time in file order), the keyword rules of spec 3.2.1 on metadata records (whole words,
case-insensitive, every field; Books' signal counting), parent_asin -> asin, items without a
metadata record, Books' one-hour sessions, and errors naming the file and line for a truncated
gzip stream, malformed JSON and a record missing a field.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from erase_jax.data.atomic import DataFormatError, read_atomic
from erase_jax.data.prepare import prepare_dataset, read_stats

T0 = 1_600_000_000_000  # ms
HOUR = 3_600_000
USERS = ("AU", "BU", "CU", "DU", "EU", "FU")
GROCERY_ITEMS = {  # asin: parent_asin; every user reviews each once (the 5-core block)
    "B01": "P01", "B02": "P02", "B03": "P03", "B04": "P03", "B05": "P05", "B06": "P06",
}
GROCERY_META = [
    {"parent_asin": "P01", "main_category": "Grocery", "title": "Organic BEEF Jerky", "categories": ["Snacks"]},
    {"parent_asin": "P02", "title": "Red Wine Vinegar", "description": ["for salads"]},  # the rule's "wine"
    {"parent_asin": "P03", "title": "Gingerbread Cookies", "details": {"Flavor": "Hamburger", "Weight": 12},
     "features": ["gingery", "hamper gift"]},  # gin, ham: not whole words
    {"parent_asin": "P05", "title": "Brewing kit", "features": ["tastes like an ipa"], "store": "Sausage Co."},
    {"parent_asin": "P99", "title": "Whiskey never reviewed"},  # not reviewed: skipped
]


def review(user, asin, t, rating=5.0, parent=None):
    return {"rating": rating, "title": "t", "text": "x", "asin": asin, "parent_asin": parent or GROCERY_ITEMS[asin],
            "user_id": user, "timestamp": t, "helpful_vote": 0, "verified_purchase": True}


def grocery_reviews():
    rows = [review(u, a, T0 + 1000 * k + j) for k, u in enumerate(USERS) for j, a in enumerate(GROCERY_ITEMS)]
    rows.insert(2, dict(rows[0]))  # an exact duplicate
    rows.append(review("AU", "B01", T0 + 99_999, rating=1.0))  # the same pair later: kept
    rows += [review("BU", "B03", T0 - 5), review("BU", "B04", T0 - 5)]  # a tie in time: file order
    rows.append(review("CU", "B07", T0, parent="P01"))  # one review only: leaves in the 5-core
    return rows


def write_jsonl(path, records, compress=True):
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def grocery_raw(folder, reviews=None, meta=None):
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "Grocery_and_Gourmet_Food.jsonl.gz", grocery_reviews() if reviews is None else reviews)
    write_jsonl(folder / "meta_Grocery_and_Gourmet_Food.jsonl.gz", GROCERY_META if meta is None else meta)
    return folder


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):
    root = tmp_path_factory.mktemp("grocery")
    out = root / "amazon_reviews_grocery_and_gourmet_food"
    prepare_dataset("amazon_reviews_grocery_and_gourmet_food", grocery_raw(root / "raw"), out, quiet=True)
    return out


def test_grocery_rows(grocery):
    lines = (grocery / f"{grocery.name}.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == 36 + 1 + 2  # block, the later pair, the tie; the duplicate and B07 are gone
    assert [r[1] for r in rows if r[0] == "AU"] == ["B01", "B02", "B03", "B04", "B05", "B06", "B01"]
    assert [(r[1], r[3]) for r in rows if r[0] == "BU"][:2] == [("B03", str(T0 - 5)), ("B04", str(T0 - 5))]
    assert [r for r in rows if r[0] == "AU"][-1][2:] == ["1", str(T0 + 99_999)]
    assert list(dict.fromkeys(r[0] for r in rows)) == list(USERS)


def test_grocery_sensitive_lists_and_item_file(grocery):
    assert (grocery / "sensitive_asins_meat.txt").read_text() == "B01\nB05\n"
    assert (grocery / "sensitive_asins_alcohol.txt").read_text() == "B02\nB05\n"
    item_lines = (grocery / f"{grocery.name}.item").read_text().splitlines()
    assert item_lines[0] == "item_id:token\tparent_asin:token\tcategories:token_seq"
    assert item_lines[1:] == ["B01\tP01\tmeat", "B02\tP02\talcohol", "B03\tP03\t", "B04\tP03\t",
                              "B05\tP05\talcohol meat", "B06\tP06\t"]
    inter = read_atomic(grocery)
    assert inter.item_tokens[inter.category_items("meat")].tolist() == ["B01", "B05"]


def test_grocery_stats(grocery):
    stats = read_stats(grocery)
    assert [(s["users"], s["items"], s["interactions"]) for s in stats["steps"]] == [(6, 7, 41), (6, 7, 40), (6, 6, 39)]
    meat = stats["steps"][-1]["sensitive"]["meat"]
    assert meat == {"items": 2, "interactions": 13, "share": 13 / 39}
    assert stats["sensitive"]["meat"]["parent_asins_matched"] == 2
    assert stats["sensitive"]["alcohol"]["signals"]["text"]["exact"][-3:] == ["pilsner", "champagne", "prosecco"]
    assert stats["notes"] == {"asins_with_two_parent_asins": 0, "items_without_metadata": 1}
    assert stats["forget_defaults"] == {"rule": "fit", "rating_threshold": 3.5} and stats["task"] == "CF"


def test_grocery_reads_plain_jsonl_too(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "Grocery_and_Gourmet_Food.jsonl", grocery_reviews(), compress=False)
    write_jsonl(raw / "meta_Grocery_and_Gourmet_Food.jsonl", GROCERY_META, compress=False)
    prepare_dataset("amazon_reviews_grocery_and_gourmet_food", raw, tmp_path / "grocery", options=["categories=[meat]"],
                    quiet=True)
    assert sorted(p.name for p in (tmp_path / "grocery").iterdir()) == [
        "grocery.inter", "grocery.item", "sensitive_asins_meat.txt", "stats.json"]


def test_truncated_gzip_names_file_and_line(tmp_path):
    raw = grocery_raw(tmp_path / "raw")
    path = raw / "Grocery_and_Gourmet_Food.jsonl.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataFormatError, match=r"Grocery_and_Gourmet_Food.jsonl.gz, line \d+: truncated or corrupt gzip"):
        prepare_dataset("amazon_reviews_grocery_and_gourmet_food", raw, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


@pytest.mark.parametrize("broken, message", [
    ({"asin": "B01", "parent_asin": "P01", "user_id": "AU", "timestamp": T0}, "line 3: no 'rating' field"),
    ({"asin": "B01", "parent_asin": "P01", "user_id": "AU", "timestamp": T0, "rating": "five"},
     "line 3: rating 'five' is not a number"),
    ("{not json", "line 3: malformed JSON"),
])
def test_bad_review_lines_name_file_and_line(tmp_path, broken, message):
    raw = grocery_raw(tmp_path / "raw")
    lines = [json.dumps(r) for r in grocery_reviews()]
    lines.insert(2, broken if isinstance(broken, str) else json.dumps(broken))
    (raw / "Grocery_and_Gourmet_Food.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataFormatError, match=f"Grocery_and_Gourmet_Food.jsonl.gz, {message}"):
        prepare_dataset("amazon_reviews_grocery_and_gourmet_food", raw, tmp_path / "out", quiet=True)


def test_meta_record_without_parent_asin(tmp_path):
    raw = grocery_raw(tmp_path / "raw", meta=[*GROCERY_META[:2], {"title": "no id"}])
    with pytest.raises(DataFormatError, match="meta_Grocery_and_Gourmet_Food.jsonl.gz, line 3: no 'parent_asin' field"):
        prepare_dataset("amazon_reviews_grocery_and_gourmet_food", raw, tmp_path / "out", quiet=True)


# ---------------------------------------------------------------------------------------------- Books

BOOKS = {  # asin -> (parent, metadata); the health rule needs 2 signals, explicit 1
    "1": ("Q1", {"title": "Depression and Anxiety", "description": ["A memoir of grief"]}),  # title + description
    "2": ("Q2", {"title": "Depression explained", "categories": ["Books", "Self-Help", "Therapy"]}),  # 1 signal
    "3": ("Q3", {"title": "Erotic Tales"}),  # explicit
    "4": ("Q4", {"title": "Gardening", "features": ["no war here"], "details": {"Subject": "war"}}),  # violence: 1
    "5": ("Q5", {"title": "Cooking"}),
}


def books_raw(folder):
    folder.mkdir(parents=True, exist_ok=True)
    times = {"AU": [0, 30, 90, 91, 150], "BU": [0, 60, 120, 180, 240]}  # minutes
    reviews = []
    for k, user in enumerate(USERS):
        minutes = times.get(user, [10 * j for j in range(5)])
        reviews += [review(user, asin, T0 + k + m * 60_000, parent=BOOKS[asin][0])
                    for asin, m in zip(BOOKS, minutes)]
    write_jsonl(folder / "Books.jsonl.gz", reviews)
    write_jsonl(folder / "meta_Books.jsonl.gz", [{"parent_asin": p, **meta} for p, meta in BOOKS.values()])
    return folder


def test_books_sessions_and_multi_signal_rules(tmp_path):
    out = tmp_path / "amazon_reviews_books"
    prepare_dataset("amazon_reviews_books", books_raw(tmp_path / "raw"), out, quiet=True)
    assert (out / "sensitive_asins_health.txt").read_text() == "1\n"
    assert (out / "sensitive_asins_explicit.txt").read_text() == "3\n"
    assert (out / "sensitive_asins_violence.txt").read_text() == ""  # one signal of the two needed
    header, *lines = (out / f"{out.name}.inter").read_text().splitlines()
    assert header.split("\t") == ["user_id:token", "session_id:token", "item_id:token", "rating:float", "timestamp:float"]
    sessions = {}
    for line in lines:
        user, session, _, _, _ = line.split("\t")
        sessions.setdefault(user, []).append(session)
    # AU: gaps 30, 60, 1, 59 minutes -> one session (a gap must EXCEED one hour); BU: exactly one hour each
    assert len(set(sessions["AU"])) == 1 and len(set(sessions["BU"])) == 1
    inter = read_atomic(out)
    assert inter.sessions is not None and len(np.unique(inter.sessions)) == len(USERS)
    stats = read_stats(out)
    assert stats["steps"][-1]["sessions"] == 6 and stats["forget_defaults"] == {"rule": "reach", "rating_threshold": 3.0}
    assert stats["sensitive"]["health"]["min_signals"] == 2 and stats["task"] == "SBR"


def test_books_cuts_a_session_after_a_gap_over_one_hour(tmp_path):
    raw = books_raw(tmp_path / "raw")
    records = [json.loads(line) for line in gzip.decompress((raw / "Books.jsonl.gz").read_bytes()).splitlines()]
    for r in records:
        if r["user_id"] == "CU" and r["asin"] in ("4", "5"):
            r["timestamp"] += HOUR + 1
    write_jsonl(raw / "Books.jsonl.gz", records)
    out = tmp_path / "books"
    prepare_dataset("amazon_reviews_books", raw, out, quiet=True)
    inter = read_atomic(out)
    cu = inter.sessions[inter.users == inter.user_ids(["CU"])[0]]
    assert [int(s) - int(cu[0]) for s in cu] == [0, 0, 0, 1, 1]
