"""The Goodreads preparer: the rating filter, file-order timestamps, and mental_health found on
real book ids and written in the interactions' csv ids (the mapping the original lacks)."""

from __future__ import annotations

import gzip
import json

import pytest

from erase_jax.data.atomic import DataFormatError, read_atomic
from erase_jax.data.prepare import prepare_dataset, read_stats

BOOKS = {  # csv id -> (real id, metadata); mental_health needs two signals
    "0": ("9001", {"title": "Depression", "popular_shelves": [{"count": "4", "name": "anxiety"}]}),  # title + shelf
    "1": ("9002", {"title": "Grief Notes", "description": "A memoir of an eating disorder"}),  # title + description
    "2": ("9003", {"title": "Suicide Squad", "popular_shelves": [{"count": "9", "name": "comics"}]}),  # title only
    "3": ("9004", {"title": "Gardening", "description": "Therapy for the soul",
                   "popular_shelves": [{"count": "2", "name": "physiotherapy"}]}),  # description + shelf (relaxed)
    "4": ("9005", {"title": "Cooking"}),
    "5": (None, None),  # neither in the map nor in the metadata
}


def goodreads_raw(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(user, book, 4) for user in range(6) for book in BOOKS]
    rows.insert(1, (0, "4", 0))  # not rated: dropped
    rows.insert(5, (1, "3", 2))  # rated below 3: dropped
    (folder / "goodreads_interactions.csv").write_text(
        "user_id,book_id,is_read,rating,is_reviewed\n" + "".join(f"{u},{b},1,{r},0\n" for u, b, r in rows))
    (folder / "book_id_map.csv").write_text(
        "book_id_csv,book_id\n" + "".join(f"{c},{real}\n" for c, (real, _) in BOOKS.items() if real))
    records = [{"book_id": real, **meta} for real, meta in BOOKS.values() if meta] + [{"book_id": "1", "title": "x"}]
    (folder / "goodreads_books.json.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    return folder


def test_goodreads_rows_ids_and_mental_health(tmp_path):
    out = tmp_path / "goodreads"
    prepare_dataset("goodreads", goodreads_raw(tmp_path / "raw"), out, quiet=True)
    header, *lines = (out / "goodreads.inter").read_text().splitlines()
    rows = [line.split("\t") for line in lines]
    assert len(rows) == 36 and {r[2] for r in rows} == {"4"}
    assert [(r[1], r[3]) for r in rows if r[0] == "0"] == [(str(b), str(b)) for b in range(6)]  # running index
    assert [r[3] for r in rows if r[0] == "1"][:2] == ["6", "7"]  # the rows of user 0 came first in the file
    assert (out / "sensitive_asins_mental_health.txt").read_text() == "0\n1\n3\n"  # csv ids
    items = dict(line.split("\t", 1) for line in (out / "goodreads.item").read_text().splitlines()[1:])
    assert items["0"] == "9001\tmental_health" and items["2"] == "9003\t" and items["5"] == "-\t"
    stats = read_stats(out)
    assert stats["sensitive"]["mental_health"]["books_matched"] == 3
    assert stats["notes"] == {"items_without_book_id": 1, "items_without_metadata": 1}
    assert stats["steps"][0]["step"].startswith("read (goodreads_interactions.csv: 38 rows; kept rating > 0 and >= 3)")
    assert stats["forget_defaults"] == {"rule": "fit", "rating_threshold": 3.0}
    inter = read_atomic(out)
    assert inter.item_tokens[inter.category_items("mental_health")].tolist() == ["0", "1", "3"]


def test_goodreads_bad_rating_and_header(tmp_path):
    raw = goodreads_raw(tmp_path / "raw")
    path = raw / "goodreads_interactions.csv"
    path.write_text(path.read_text().replace("0,1,1,4,0\n", "0,1,1,four,0\n", 1))
    with pytest.raises(DataFormatError, match=r"goodreads_interactions.csv, line 4: rating 'four' is not a number"):
        prepare_dataset("goodreads", raw, tmp_path / "out", quiet=True)
    (raw / "book_id_map.csv").write_text("csv,real\n0,1\n")
    path.write_text("user_id,book_id,is_read,rating,is_reviewed\n1,1,1,4,0\n")
    with pytest.raises(DataFormatError, match=r"book_id_map.csv, line 1: header lacks column\(s\) \['book_id_csv'"):
        prepare_dataset("goodreads", raw, tmp_path / "out", options=["k_core=0"], quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
