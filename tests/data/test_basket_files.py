"""Basket readers (merged JSON, Ta-Feng, Instacart, both Dunnhumby releases), category files, the RC filter."""

import dataclasses
import datetime
import json

import numpy as np
import pytest

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.basket_csv import (
    read_basket_folder,
    read_dunnhumby_journey,
    read_dunnhumby_sortofreal,
    read_instacart,
    read_tafeng_csv,
)
from erase_jax.data.basket_files import filter_baskets, read_category_file, read_merged_json, with_category_files
from tests.conftest import require_dataset


def baskets_of(inter):
    """{user token: [[item token, ...] per basket in row order]}, plus a check of the layout contract."""
    assert inter.sessions.dtype == np.int64 and inter.timestamps.dtype == np.float64
    assert np.all(np.diff(inter.sessions) >= 0) and np.array_equal(np.unique(inter.sessions), np.arange(inter.sessions.max() + 1))
    assert np.all(np.diff(inter.users) >= 0)  # rows grouped by user, users in first-seen order
    out = {}
    for session in np.unique(inter.sessions):
        rows = np.flatnonzero(inter.sessions == session)
        assert len(set(inter.items[rows])) == len(rows)  # no duplicate inside a basket
        assert len(set(inter.timestamps[rows])) == 1 and len(set(inter.users[rows])) == 1
        out.setdefault(str(inter.user_tokens[inter.users[rows[0]]]), []).append([str(inter.item_tokens[i]) for i in inter.items[rows]])
    return out


def basket_times(inter):
    return [float(inter.timestamps[np.flatnonzero(inter.sessions == s)[0]]) for s in np.unique(inter.sessions)]


def write(path, text):
    path.write_text(text)
    return path


def day(text, fmt):
    return float(datetime.datetime.strptime(text, fmt).date().toordinal())


# ---------------------------------------------------------------- merged JSON

def test_merged_json_drops_empty_baskets_and_duplicates(tmp_path):
    path = tmp_path / "toy_merged.json"
    path.write_text(json.dumps({"7": [[3, 1, 3], [], [2]], "2": [[], []], "5": [[1], [9, 4], [4]]}))
    inter = read_merged_json(path)
    assert baskets_of(inter) == {"7": [["3", "1"], ["2"]], "5": [["1"], ["9", "4"], ["4"]]}
    assert inter.name == "toy" and inter.user_tokens.tolist() == ["7", "5"]
    assert inter.item_tokens.tolist() == ["3", "1", "2", "9", "4"]
    assert basket_times(inter) == [0.0, 2.0, 0.0, 1.0, 2.0]  # the basket's index in the file's list


@pytest.mark.parametrize("content, expected", [
    ({"1": [[1, 2]], "u9": [[1], [2, "x"]]}, "user 'u9', basket 1: item 'x' is not an integer"),
    ({"1": [[1, 2.5]]}, "user '1', basket 0: item 2.5 is not an integer"),
    ({"1": [[1], 4]}, "user '1', basket 1: expected a list of items, got int"),
    ({"1": {"a": [1]}}, "user '1': expected a list of baskets, got dict"),
    ([[1, 2]], "expected an object"),
])
def test_merged_json_errors_name_file_user_and_basket(tmp_path, content, expected):
    path = tmp_path / "bad_merged.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="bad_merged.json") as error:
        read_merged_json(path)
    assert expected in str(error.value)


def test_merged_json_syntax_error_names_line(tmp_path):
    path = write(tmp_path / "broken_merged.json", '{"1": [[1, 2]],\n "2": [[3,, 4]]}')
    with pytest.raises(DataFormatError, match=r"broken_merged.json, line 2: malformed JSON"):
        read_merged_json(path)


def test_real_tafeng_merged_statistics(data_root):
    inter = read_merged_json(require_dataset(data_root, "tafeng") / "tafeng_merged.json")
    assert (inter.n_users, inter.n_items, len(inter)) == (13_858, 11_997, 571_933)
    assert len(np.unique(inter.sessions)) == 91_227 and inter.sessions.max() == 91_226
    assert sorted(int(t) for t in inter.item_tokens) == list(range(11_997))  # 0-based raw ids, 0 a real item
    per_user = np.bincount(np.unique(np.c_[inter.users, inter.sessions], axis=0)[:, 0])
    assert (per_user.min(), per_user.max(), int((per_user >= 4).sum())) == (3, 51, 10_061)


# ---------------------------------------------------------------- Ta-Feng raw CSV

TAFENG_HEADER = "TRANSACTION_DT,CUSTOMER_ID,AGE_GROUP,PIN_CODE,PRODUCT_SUBCLASS,PRODUCT_ID,AMOUNT,ASSET,SALES_PRICE\n"


def test_tafeng_csv_baskets_are_customer_days(tmp_path):
    path = write(tmp_path / "ta_feng_all_months_merged.csv", TAFENG_HEADER + (
        "11/3/2000,01069009,35-39,115,100205,4710085120468,1,57,70\n"
        "11/1/2000,01069009,35-39,115,100205,4710085120093,2,84,102\n"
        "11/1/2000,00141833,50-54,221,530105,4710085120468,1,26,33\n"
        "\n"
        "11/1/2000,01069009,35-39,115,100205,4710085120468,1,57,70\n"
        "11/3/2000,01069009,35-39,115,100205,4710085120468,1,57,70\n"  # the same product again that day
        "11/1/2000,01069009,35-39,115,100205,4710085120093,1,57,70\n"
    ))
    inter = read_tafeng_csv(path)
    assert baskets_of(inter) == {
        "01069009": [["4710085120093", "4710085120468"], ["4710085120468"]],  # 11/1 before 11/3
        "00141833": [["4710085120468"]],
    }
    assert basket_times(inter) == [day("2000-11-01", "%Y-%m-%d"), day("2000-11-03", "%Y-%m-%d"), day("2000-11-01", "%Y-%m-%d")]


@pytest.mark.parametrize("row, line, problem", [
    ("13/45/2000,1,a,b,c,7,1,1,1\n", 3, "TRANSACTION_DT '13/45/2000' is not a date in the format %m/%d/%Y"),
    ("11/1/2000,1,a,b,c\n", 3, "empty or missing PRODUCT_ID"),
    ("11/1/2000,,a,b,c,7,1,1,1\n", 3, "empty or missing CUSTOMER_ID"),
    ("11/1/2000,1,a,b,c,7,1,1,1,extra\n", 3, "malformed CSV"),
])
def test_tafeng_csv_malformed_row_names_file_and_line(tmp_path, row, line, problem):
    path = write(tmp_path / "ta_feng.csv", TAFENG_HEADER + "11/2/2000,1,a,b,c,8,1,1,1\n" + row)
    with pytest.raises(DataFormatError) as error:
        read_tafeng_csv(path)
    assert f"ta_feng.csv, line {line}" in str(error.value) and problem in str(error.value)


def test_csv_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path / "ta_feng.csv", TAFENG_HEADER + "11/2/2000,1,a,b,c,8,1,1,1\n\n\n11/2/2000,1,a,b,c,,1,1,1\n")
    with pytest.raises(DataFormatError, match=r"ta_feng.csv, line 5: empty or missing PRODUCT_ID"):
        read_tafeng_csv(path)


def test_csv_missing_column_is_reported_on_the_header(tmp_path):
    path = write(tmp_path / "ta_feng.csv", "TRANSACTION_DT,CUSTOMER_ID\n11/2/2000,1\n")
    with pytest.raises(DataFormatError, match=r"ta_feng.csv, line 1: header lacks column\(s\) \['PRODUCT_ID'\]"):
        read_tafeng_csv(path)


# ---------------------------------------------------------------- Instacart

def write_instacart(folder, prior_extra=""):
    write(folder / "orders.csv", "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
          "10,1,prior,2,2,8,15.0\n"
          "11,1,prior,1,3,7,\n"
          "12,2,prior,1,1,9,\n"
          "13,1,train,3,4,8,7.0\n"
          "14,2,test,2,1,9,3.0\n"
          "15,2,prior,3,1,9,3.0\n")
    write(folder / "order_products__prior.csv", "order_id,product_id,add_to_cart_order,reordered\n"
          "10,196,1,0\n10,14084,2,0\n10,196,3,1\n11,12427,1,0\n12,196,1,0\n15,26088,1,0\n" + prior_extra)
    write(folder / "order_products__train.csv", "order_id,product_id,add_to_cart_order,reordered\n13,49302,1,1\n13,196,2,1\n")


def test_instacart_orders_by_order_number_and_aisle_categories(tmp_path):
    write_instacart(tmp_path)
    write(tmp_path / "products.csv", "product_id,product_name,aisle_id,department_id\n"
          '196,"Soda, Cola",77,7\n14084,Lager,27,5\n12427,Bacon,106,12\n49302,Wipes,56,18\n99999,Red Wine,28,5\n')
    inter = read_instacart(tmp_path)
    assert baskets_of(inter) == {"1": [["12427"], ["196", "14084"], ["49302", "196"]], "2": [["196"], ["26088"]]}
    assert basket_times(inter) == [1.0, 2.0, 3.0, 1.0, 3.0]  # order_number; test order 14 has no products
    names = lambda category: sorted(str(inter.item_tokens[i]) for i in inter.item_categories[category])
    assert (names("alcohol"), names("meat"), names("baby")) == (["14084"], ["12427"], ["49302"])


def test_instacart_unknown_order_names_line(tmp_path):
    write_instacart(tmp_path, prior_extra="77,196,1,0\n")
    with pytest.raises(DataFormatError, match=r"order_products__prior.csv, line 8: order_id 77 is not in orders.csv"):
        read_instacart(tmp_path)


# ---------------------------------------------------------------- Dunnhumby

JOURNEY = ("household_key,BASKET_ID,DAY,PRODUCT_ID,QUANTITY,SALES_VALUE,STORE_ID,RETAIL_DISC,TRANS_TIME,WEEK_NO,"
           "COUPON_DISC,COUPON_MATCH_DISC\n"
           "2375,900,1,1004906,1,1.39,364,-0.6,1631,1,0,0\n"
           "2375,900,1,1033142,1,0.82,364,0,1631,1,0,0\n"
           "2375,901,2,1004906,2,1.39,364,0,0905,1,0,0\n"
           "2375,901,2,1004906,1,1.39,364,0,0905,1,0,0\n"
           "1364,902,1,842930,1,2.19,31742,0,1642,1,0,0\n"
           "2375,899,1,1063739,1,0.99,364,0,1200,1,0,0\n")


def test_dunnhumby_journey_orders_by_day_then_time(tmp_path):
    inter = read_dunnhumby_journey(write(tmp_path / "transaction_data.csv", JOURNEY))
    assert baskets_of(inter) == {"2375": [["1063739"], ["1004906", "1033142"], ["1004906"]], "1364": [["842930"]]}
    assert basket_times(inter) == [1 + 720 / 1440, 1 + 991 / 1440, 2 + 545 / 1440, 1 + 1002 / 1440]


def test_dunnhumby_journey_original_time_of_day_order(tmp_path):
    inter = read_dunnhumby_journey(write(tmp_path / "transaction_data.csv", JOURNEY), order="time_of_day")
    # next-basket spec 5.16: by TRANS_TIME only, so day 2 at 09:05 comes first
    assert baskets_of(inter)["2375"] == [["1004906"], ["1063739"], ["1004906", "1033142"]]
    assert basket_times(inter) == [0.0, 1.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="order must be one of"):
        read_dunnhumby_journey(tmp_path / "transaction_data.csv", order="trans_time")


SORT_OF_REAL = "SHOP_WEEK,SHOP_DATE,SHOP_WEEKDAY,SHOP_HOUR,QUANTITY,SPEND,PROD_CODE,CUST_CODE,BASKET_ID\n"


def test_dunnhumby_sortofreal_baskets_are_customer_dates(tmp_path):
    write(tmp_path / "transactions_200608.csv", SORT_OF_REAL + (
        "200608,20060415,7,10,1,1.2,PRD0900001,CUST0000001,994100100000001\n"
        "200608,20060413,5,12,1,0.5,PRD0900002,CUST0000001,994100100000002\n"
        "200608,20060413,5,18,1,0.5,PRD0900003,CUST0000001,994100100000003\n"  # second visit, same date
        "200608,20060413,5,12,1,0.5,PRD0900002,,994100100000004\n"  # no loyalty card: dropped
    ))
    write(tmp_path / "transactions_200607.csv", SORT_OF_REAL + "200607,20060406,4,9,1,0.9,PRD0900002,CUST0000002,9941001\n")
    inter = read_dunnhumby_sortofreal(tmp_path)
    assert baskets_of(inter) == {"CUST0000002": [["PRD0900002"]], "CUST0000001": [["PRD0900002", "PRD0900003"], ["PRD0900001"]]}
    assert basket_times(inter) == [day("20060406", "%Y%m%d"), day("20060413", "%Y%m%d"), day("20060415", "%Y%m%d")]
    write(tmp_path / "transactions_200609.csv", SORT_OF_REAL + "200609,2006-04-20,4,9,1,0.9,PRD0900002,CUST0000002,1\n")
    with pytest.raises(DataFormatError, match=r"transactions_200609.csv, line 2: SHOP_DATE '2006-04-20' is not a date"):
        read_dunnhumby_sortofreal(tmp_path)


# ---------------------------------------------------------------- category files and the RC filter

def toy(tmp_path):
    path = tmp_path / "toy_merged.json"
    path.write_text(json.dumps({"u": [[1, 2], [3], [1, 4], [2]], "v": [[1], [5], [1]], "w": [[2], [2]]}))
    return read_merged_json(path)


def test_category_files_csv_and_item_list(tmp_path):
    inter = toy(tmp_path)
    csv_path = write(tmp_path / "cats.csv", "item,category\n1,alcohol\n5, meat\n\n4,alcohol\n")
    list_path = write(tmp_path / "sensitive_products_baby.txt", "2\n\n3\n999\n")
    found, unknown = read_category_file(list_path, inter.item_tokens)
    assert list(found) == ["baby"] and unknown == ["999"]
    with pytest.warns(UserWarning, match=r"1 item tokens are not in toy's vocabulary \(e.g. '999'\)"):
        inter = with_category_files(inter, csv_path, list_path)
    names = {c: [str(inter.item_tokens[i]) for i in ids] for c, ids in inter.item_categories.items()}
    assert names == {"alcohol": ["1", "4"], "meat": ["5"], "baby": ["2", "3"]}


@pytest.mark.parametrize("name, text, line", [
    ("cats.csv", "item,category\n1,alcohol\n2\n", 3),
    ("cats.csv", "1,alcohol,extra\n", 1),
    ("alcohol.txt", "1\n2 3\n", 2),
])
def test_category_file_malformed_line(tmp_path, name, text, line):
    with pytest.raises(DataFormatError, match=rf"{name}, line {line}: expected"):
        read_category_file(write(tmp_path / name, text), toy(tmp_path).item_tokens)


def test_filter_baskets_users_then_items_in_non_last_baskets(tmp_path):
    inter = toy(tmp_path)  # u: 4 baskets, v: 3, w: 2
    kept = filter_baskets(inter, min_baskets=3, max_baskets=3, min_item_count=0)
    assert baskets_of(kept) == {"v": [["1"], ["5"], ["1"]]}
    # item counts over non-last baskets of u and v: 1 -> 3, 2 -> 1, 3 -> 1, 4 -> 1, 5 -> 1
    kept = filter_baskets(inter, min_baskets=3, max_baskets=50, min_item_count=2)
    assert baskets_of(kept) == {"u": [["1"], ["1"]], "v": [["1"], ["1"]]}  # emptied baskets vanish, users not re-checked
    assert kept.sessions.tolist() == [0, 1, 2, 3] and kept.item_tokens.tolist() == ["1"]
    with pytest.raises(ValueError, match="needs basket ids"):
        filter_baskets(dataclasses.replace(inter, sessions=None))


def test_read_basket_folder_recognises_formats_and_sensitive_lists(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="no basket data in"):
        read_basket_folder(folder)
    write(folder / "transaction_data.csv", JOURNEY)
    assert read_basket_folder(folder).name == "dunnhumby"
    (folder / "shop_merged.json").write_text(json.dumps({"1": [[1, 2], [3]]}))
    write(folder / "sensitive_products_alcohol.txt", "3\n")
    inter = read_basket_folder(folder)
    assert inter.name == "shop" and [str(inter.item_tokens[i]) for i in inter.category_items("alcohol")] == ["3"]
