"""The next-basket preparers (Ta-Feng, Instacart, Dunnhumby) on hand-made raw CSVs.

Checked: the merged JSON basket by basket after each filter of the producing script (users by
basket count, then items by their count in non-last baskets, emptied baskets dropped), the
re-indexing from 0 with its maps, the category lists in the new ids (Instacart aisles,
Dunnhumby's product.csv rule or a given list of raw ids), the statistics per step, and that the
basket loader reads the folder back.
"""

from __future__ import annotations

import json

import pytest

from erase_jax.data.basket_csv import read_basket_folder
from erase_jax.data.prepare import prepare_dataset, read_stats
from tests.data.prepare.raw_files import TAFENG_HEADER

TAFENG_BASKETS = {  # customer -> baskets (one per day, days 1, 2, ...)
    "01": [["p1", "p2"], ["p1", "p3"], ["p1", "p2", "p1"], ["p9"]],  # the last basket empties (p9 only there)
    "02": [["p2", "p1"], ["p2"], ["p3", "p8"], ["p1"]],  # the third basket empties (p3, p8 rare)
    "03": [["p1"], ["p2"]],  # 2 baskets: fewer than 3
    "04": [["p1"]] * 51,  # 51 baskets: more than 50
}


def tafeng_raw(folder):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"11/{day + 1}/2000,{customer},35-39,115,100205,{item},1,57,70\n"
             for customer, baskets in TAFENG_BASKETS.items() if customer != "04"
             for day, basket in enumerate(baskets) for item in basket]
    lines += [f"{1 + day // 28}/{1 + day % 28}/2001,04,25-29,115,100205,p1,1,57,70\n" for day in range(51)]
    (folder / "ta_feng_all_months_merged.csv").write_text(TAFENG_HEADER + "".join(lines))
    return folder


def test_tafeng_merged_json_after_each_filter(tmp_path):
    out = tmp_path / "tafeng"
    prepare_dataset("tafeng", tafeng_raw(tmp_path / "raw"), out, quiet=True)
    merged = json.loads((out / "tafeng_merged.json").read_text())
    assert merged == {"0": [[0, 1], [0], [0, 1]], "1": [[1, 0], [1], [0]]}  # p1 -> 0, p2 -> 1; 01 -> 0, 02 -> 1
    assert (out / "item_map.csv").read_text() == "item_id,raw_item_id\n0,p1\n1,p2\n"
    assert (out / "user_map.csv").read_text() == "user_id,raw_user_id\n0,01\n1,02\n"
    stats = read_stats(out)
    steps = [(s["step"], s["users"], s["items"], s["baskets"], s["interactions"]) for s in stats["steps"]]
    assert steps == [
        ("read (ta_feng_all_months_merged.csv)", 4, 5, 61, 66),  # the repeated p1 counts once
        ("users with 3-50 baskets", 2, 5, 8, 13),
        ("items seen >= 3 times in non-last baskets", 2, 2, 6, 9),  # p3: 2, p8: 1, p9: 0 (last basket only)
    ]
    assert stats["sensitive"] == {} and stats["layout"] == "baskets" and stats["task"] == "NBR"
    assert stats["summary"] == "tafeng: 2 users, 2 items, 6 baskets, 9 item occurrences (density 225 %)"
    inter = read_basket_folder(out)
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 9)


def instacart_raw(folder):
    """Users 1-10, each four orders of products 100 + user (own), 500 (alcohol, aisle 27),
    600 (meat, aisle 5) and 700 (baby, aisle 82) in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    orders, prior = ["order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"], []
    for user in range(1, 11):
        for number in range(1, 5):
            order = 1000 * user + number
            orders.append(f"{order},{user},prior,{number},1,9,\n")
            prior += [f"{order},{product},1,0\n" for product in (100 + user, (500, 600, 700, 500)[number - 1])]
    (folder / "orders.csv").write_text("".join(orders))
    (folder / "order_products__prior.csv").write_text("order_id,product_id,add_to_cart_order,reordered\n" + "".join(prior))
    products = [f"{100 + u},Own {u},1,1\n" for u in range(1, 11)] + ["500,Lager,27,5\n", "600,Bacon,5,12\n",
                                                                      "700,Formula,82,18\n"]
    (folder / "products.csv").write_text("product_id,product_name,aisle_id,department_id\n" + "".join(products))
    return folder


def test_instacart_user_share_item_filter_and_aisle_lists(tmp_path):
    out = tmp_path / "instacart"
    prepare_dataset("instacart", instacart_raw(tmp_path / "raw"), out, options=["user_share=0.5", "min_item_count=4"],
                    quiet=True)
    merged = json.loads((out / "instacart_merged.json").read_text())
    assert list(merged) == ["0", "1", "2", "3", "4"]  # users 1-5 (numeric order, "10" is not among them)
    # each user's own product is in 3 non-last baskets (< 4): gone; 500, 600, 700 in 5 each
    assert all(baskets == [[0], [1], [2], [0]] for baskets in merged.values())
    assert (out / "user_map.csv").read_text().splitlines()[1:] == ["0,1", "1,2", "2,3", "3,4", "4,5"]
    assert (out / "item_map.csv").read_text().splitlines()[1:] == ["0,500", "1,600", "2,700"]
    lists = {c: (out / f"sensitive_asins_{c}.txt").read_text() for c in ("alcohol", "meat", "baby")}
    assert lists == {"alcohol": "0\n", "meat": "1\n", "baby": "2\n"}
    stats = read_stats(out)
    assert [s["step"] for s in stats["steps"]] == ["read (orders.csv)", "the first 50% of user ids",
                                                   "users with 3-50 baskets", "items seen >= 4 times in non-last baskets"]
    assert stats["sensitive"]["alcohol"]["aisle_ids"] == [27, 28, 62, 124, 134]
    assert stats["options"]["user_share"] == 0.5 and stats["forget_defaults"] == {"rule": "reach"}
    inter = read_basket_folder(out)
    assert inter.item_tokens[inter.category_items("baby")].tolist() == ["2"]


def test_instacart_defaults_are_the_reality_check_filters(tmp_path):
    from erase_jax.data.prepare import build_preparer

    preparer = build_preparer("instacart")
    assert (preparer.user_share, preparer.min_baskets, preparer.max_baskets, preparer.min_item_count) == (0.1, 3, 50, 17)
    assert build_preparer("tafeng").min_item_count == 3
    raw = instacart_raw(tmp_path / "raw")
    (raw / "products.csv").unlink()
    with pytest.raises(FileNotFoundError, match="products.csv is needed for the categories"):
        prepare_dataset("instacart", raw, tmp_path / "instacart", quiet=True)


JOURNEY_HEADER = ("household_key,BASKET_ID,DAY,PRODUCT_ID,QUANTITY,SALES_VALUE,STORE_ID,RETAIL_DISC,TRANS_TIME,"
                  "WEEK_NO,COUPON_DISC,COUPON_MATCH_DISC\n")
PRODUCTS = ("PRODUCT_ID,MANUFACTURER,DEPARTMENT,BRAND,COMMODITY_DESC,SUB_COMMODITY_DESC,CURR_SIZE_OF_PRODUCT\n"
            "11,1,GROCERY,National,BEERS/ALES,BEERS/ALES,12 OZ\n"
            "12,1,GROCERY,National,SOFT DRINKS,GINGER ALE,12 OZ\n"  # "ale" is not a keyword ("ales" is)
            "13,1,GROCERY,National,CONDIMENTS,VINEGAR & COOKING WINES,16 OZ\n"  # the rule's cooking wine
            "14,1,PRODUCE,National,VEGETABLES,CARROTS,1 LB\n"
            "15,1,SPIRITS,National,SPIRITS,VODKA,750 ML\n")


def journey_raw(folder, households=("7", "8", "9")):
    """Household 7: 5 baskets, 8: 4, 9: 3 (below ERASE's >= 4); the day order disagrees with
    the time of day (the original's ordering bug)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for h, household in enumerate(households):
        for day in range(5 - h):
            basket = 100 * (h + 1) + day
            clock = 2300 - 100 * day
            rows += [f"{household},{basket},{day + 1},{product},1,1.0,1,0,{clock:04d},1,0,0\n"
                     for product in ((11, 14) if day % 2 == 0 else (12, 13, 15))]
    (folder / "transaction_data.csv").write_text(JOURNEY_HEADER + "".join(rows))
    (folder / "product.csv").write_text(PRODUCTS)
    return folder


def test_dunnhumby_complete_journey(tmp_path):
    out = tmp_path / "dunnhumby"
    prepare_dataset("dunnhumby", journey_raw(tmp_path / "raw"), out, quiet=True)
    merged = json.loads((out / "dunnhumby_merged.json").read_text())
    assert list(merged) == ["0", "1"]  # household 9 has 3 baskets
    assert merged["0"] == [[0, 1], [2, 3, 4], [0, 1], [2, 3, 4], [0, 1]]  # by DAY, not by time of day
    assert (out / "item_map.csv").read_text().splitlines()[1:] == ["0,11", "1,14", "2,12", "3,13", "4,15"]
    assert (out / "sensitive_asins_alcohol.txt").read_text() == "0\n3\n4\n"  # 11 beers, 13 cooking wines, 15 vodka
    stats = read_stats(out)
    assert [s["step"] for s in stats["steps"]] == ["read (transaction_data.csv (The Complete Journey))",
                                                   "users with 4 or more baskets"]
    assert stats["sensitive"]["alcohol"]["products_matched"] == 3


def test_dunnhumby_given_list_in_raw_ids(tmp_path):
    raw = journey_raw(tmp_path / "raw")
    (raw / "product.csv").unlink()
    listed = tmp_path / "sensitive_products_alcohol.txt"
    listed.write_text("15\n11\n424242\n")
    with pytest.raises(FileNotFoundError, match="product.csv is needed to identify"):
        prepare_dataset("dunnhumby", raw, tmp_path / "dunnhumby", quiet=True)
    prepare_dataset("dunnhumby", raw, tmp_path / "dunnhumby", quiet=True,
                    options=["categories=[]", f"category_lists={{alcohol: {listed}}}"])
    assert (tmp_path / "dunnhumby" / "sensitive_asins_alcohol.txt").read_text() == "0\n4\n"
    record = read_stats(tmp_path / "dunnhumby")["sensitive"]["alcohol"]
    assert (record["listed"], record["not_in_data"]) == (3, 1) and record["source"].startswith("given list ")
    with pytest.raises(ValueError, match="'alcohol' is both identified and given as a list"):
        prepare_dataset("dunnhumby", raw, tmp_path / "x", options=[f"category_lists={{alcohol: {listed}}}"])
