"""Raw files in the downloads' formats: line writers for 30Music's idomaar files, and random raw
files of a chosen size (MovieLens, 30Music, #nowplaying, Amazon Grocery and Books, Goodreads,
Instacart, both Dunnhumby forms) for the tests that need more users than the hand-made tables
(forget sets, training on a prepared folder)."""

from __future__ import annotations

import gzip
import json

import numpy as np

HEALTH_TITLES = ("Suicide Room (2011)", "The Psychiatrist (1990)", "Rehab Days (2004)")


def random_movielens(folder, n_users: int = 60, n_movies: int = 20, per_user: int = 12, seed: int = 0):
    """`ratings.csv` + `movies.csv` (the ml-20m and later format): every user rates `per_user`
    distinct random movies (ratings 1-5 in halves, increasing timestamps); movies 1-3 carry
    health titles, every movie one of four genres."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp\n"]
    for user in range(1, n_users + 1):
        movies = rng.choice(np.arange(1, n_movies + 1), per_user, replace=False)
        ratings = rng.integers(2, 11, per_user) / 2
        lines += [f"{user},{m},{r},{1_100_000_000 + 1000 * user + k}\n" for k, (m, r) in enumerate(zip(movies, ratings))]
    (folder / "ratings.csv").write_text("".join(lines))
    genres = ("Comedy", "Drama", "Horror", "Children")
    titles = [f'{m},"{HEALTH_TITLES[m - 1] if m <= 3 else f"Movie {m} (2000)"}",{genres[m % 4]}\n'
              for m in range(1, n_movies + 1)]
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(titles))
    return folder


def idomaar_session(session, start, user, tracks, separator=" "):
    """A 30Music `sessions.idomaar` line; `tracks` = [(track id, playstart, or None for none)]."""
    played = [{"type": "track", "id": t, **({} if p is None else {"playstart": p}), "playtime": 100,
               "playratio": 1.0, "action": "play"} for t, p in tracks]
    linked = {"subjects": [] if user is None else [{"type": "user", "id": user}], "objects": played}
    properties = {"numtracks": len(tracks), "playtime": 100 * len(tracks)}
    return f"event.session\t{session}\t{start}\t{json.dumps(properties)}{separator}{json.dumps(linked)}\n"


def idomaar_track(track, tags=(), name="song"):
    """A 30Music `tracks.idomaar` line whose linked entities hold the tag ids `tags`."""
    linked = {"artists": [{"type": "person", "id": 1}], "albums": [], "tags": [{"type": "tag", "id": int(t)} for t in tags]}
    return f"track\t{track}\t-1\t{json.dumps({'duration': 200, 'playcount': 3, 'MBID': '', 'name': name})}\t{json.dumps(linked)}\n"


def write_thirtymusic(folder, sessions, tracks):
    """`relations/sessions.idomaar` and `entities/tracks.idomaar` under `folder`."""
    for sub, name, lines in (("relations", "sessions.idomaar", sessions), ("entities", "tracks.idomaar", tracks)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / name).write_text("".join(lines))
    return folder


def random_listening(n_users: int, n_tracks: int, sessions_per_user: int, per_session: int, seed: int):
    """(user, session, start second, [track ids]) of random listening sessions, users 1..n_users."""
    rng = np.random.default_rng(seed)
    plays = []
    for user in range(1, n_users + 1):
        for k in range(sessions_per_user):
            tracks = rng.integers(1, n_tracks + 1, per_session).tolist()
            plays.append((user, 1000 * user + k, 1_400_000_000 + 10_000 * k + user, tracks))
    return plays


def random_thirtymusic(folder, n_users: int = 40, n_tracks: int = 30, seed: int = 0):
    """30Music raw files of random sessions; tracks 1-4 carry the explicit tag 77138."""
    sessions = [idomaar_session(s, start, u, [(t, 200 * j) for j, t in enumerate(tracks)])
                for u, s, start, tracks in random_listening(n_users, n_tracks, 3, 6, seed)]
    tracks = [idomaar_track(t, ["77138"] if t <= 4 else ["12"]) for t in range(1, n_tracks + 1)]
    return write_thirtymusic(folder, sessions, tracks)


def random_nowp(folder, n_users: int = 40, n_tracks: int = 30, seed: int = 0):
    """`sessions_2018.csv` of random sessions; tracks 1-4 have explicit titles ("Damn ...")."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,source,created_at,track_title,artist_name,musicbrainz_id,session_id\n"]
    for user, session, start, tracks in random_listening(n_users, n_tracks, 3, 6, seed):
        for j, track in enumerate(tracks):
            when = str(np.datetime64(start + 200 * j, "s")).replace("T", " ")
            title = f"Damn Song {track}" if track <= 4 else f"Song {track}"
            lines.append(f"user{user:03d},twitter,{when},{title},Artist,mbid-{track},s{session}\n")
    (folder / "sessions_2018.csv").write_text("".join(lines))
    return folder


TAFENG_HEADER = "TRANSACTION_DT,CUSTOMER_ID,AGE_GROUP,PIN_CODE,PRODUCT_SUBCLASS,PRODUCT_ID,AMOUNT,ASSET,SALES_PRICE\n"


def tafeng_with_alcohol(folder, customers: int = 12, days: int = 6):
    """Ta-Feng raw csv under `folder/raw` and a given alcohol list `folder/alcohol.txt` ("A1"):
    every customer buys C1 and C2 each day; customers 1..customers/2 also buy A1 on days 1 and 3.
    Returns the `--option` that passes the list."""
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    lines = [f"11/{day}/2000,{customer},35-39,115,100205,{item},1,57,70\n"
             for customer in range(1, customers + 1) for day in range(1, days + 1)
             for item in ("C1", "C2", *(("A1",) if customer <= customers // 2 and day in (1, 3) else ()))]
    (raw / "ta_feng_all_months_merged.csv").write_text(TAFENG_HEADER + "".join(lines))
    (folder / "alcohol.txt").write_text("A1\n")
    return f"category_lists={{alcohol: {folder / 'alcohol.txt'}}}"


def random_reviews(n_users: int, n_items: int, per_user: int, seed: int, gap_ms: int = 60_000):
    """(user, item, rating, time in ms) of random reviews: every user reviews `per_user` distinct
    items (ratings 3-5), `gap_ms` apart, users 1..n_users and items 1..n_items."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), per_user, replace=False)
        rows += [(user, int(i), float(rng.integers(3, 6)), 1_600_000_000_000 + 10_000_000 * user + gap_ms * k)
                 for k, i in enumerate(items)]
    return rows


def amazon_review(user, item, rating, time):
    return {"rating": rating, "title": "t", "text": "x", "asin": f"B{item:02d}", "parent_asin": f"P{item:02d}",
            "user_id": f"U{user:03d}", "timestamp": time, "helpful_vote": 0, "verified_purchase": True}


def write_gzip_jsonl(path, records):
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))


def random_grocery(folder, n_users: int = 60, n_items: int = 20, seed: int = 0):
    """Amazon Grocery raw files of random reviews; items 1-3 are beef jerky (meat)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_gzip_jsonl(folder / "Grocery_and_Gourmet_Food.jsonl.gz",
                     [amazon_review(*row) for row in random_reviews(n_users, n_items, 12, seed)])
    meta = [{"parent_asin": f"P{i:02d}", "title": "Beef Jerky" if i <= 3 else f"Crackers {i}"} for i in range(1, n_items + 1)]
    write_gzip_jsonl(folder / "meta_Grocery_and_Gourmet_Food.jsonl.gz", meta)
    return folder


def random_books(folder, n_users: int = 40, n_items: int = 30, seed: int = 0):
    """Amazon Books raw files: per user 3 sessions of 6 reviews (2 hours between sessions, one
    minute inside one); items 1-4 are erotic tales (explicit)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = random_reviews(n_users, n_items, 18, seed)
    records = [amazon_review(u, i, r, t + (k % 18) // 6 * 7_200_000) for k, (u, i, r, t) in enumerate(rows)]
    write_gzip_jsonl(folder / "Books.jsonl.gz", records)
    meta = [{"parent_asin": f"P{i:02d}", "title": "Erotic Tales" if i <= 4 else f"Cooking {i}"} for i in range(1, n_items + 1)]
    write_gzip_jsonl(folder / "meta_Books.jsonl.gz", meta)
    return folder


def random_goodreads(folder, n_users: int = 60, n_books: int = 20, seed: int = 0):
    """Goodreads raw files of random ratings (csv ids 0..n_books-1, real ids 9000 + csv id);
    books 0-2 are about depression with an anxiety shelf (mental_health: two signals)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = random_reviews(n_users, n_books, 12, seed)
    (folder / "goodreads_interactions.csv").write_text("user_id,book_id,is_read,rating,is_reviewed\n" + "".join(
        f"{u - 1},{i - 1},1,{int(r)},0\n" for u, i, r, _ in rows))
    (folder / "book_id_map.csv").write_text("book_id_csv,book_id\n" + "".join(f"{b},{9000 + b}\n" for b in range(n_books)))
    books = [{"book_id": str(9000 + b), "title": "Depression" if b <= 2 else f"Gardening {b}",
              "popular_shelves": [{"count": "3", "name": "anxiety" if b <= 2 else "garden"}]} for b in range(n_books)]
    write_gzip_jsonl(folder / "goodreads_books.json.gz", books)
    return folder


def random_baskets(n_users: int = 24, n_baskets: int = 5, n_items: int = 12, seed: int = 0):
    """(user, basket number, [items]) of random baskets of 3 distinct items (2..n_items);
    the odd users also buy item 1 (the alcohol item of the basket fixtures) in baskets 0 and 2."""
    rng = np.random.default_rng(seed)
    return [(user, k, [*rng.choice(np.arange(2, n_items + 1), 3, replace=False).tolist(),
                       *([1] if user % 2 and k in (0, 2) else [])])
            for user in range(1, n_users + 1) for k in range(n_baskets)]


def random_instacart(folder, **sizes):
    """Instacart raw files of `random_baskets`; product 1 is in aisle 27 (beers & coolers)."""
    folder.mkdir(parents=True, exist_ok=True)
    baskets = random_baskets(**sizes)
    orders = [f"{1000 * u + k},{u},prior,{k + 1},1,9,\n" for u, k, _ in baskets]
    prior = [f"{1000 * u + k},{item},1,0\n" for u, k, items in baskets for item in items]
    (folder / "orders.csv").write_text(
        "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n" + "".join(orders))
    (folder / "order_products__prior.csv").write_text("order_id,product_id,add_to_cart_order,reordered\n" + "".join(prior))
    products = sorted({i for _, _, items in baskets for i in items})
    (folder / "products.csv").write_text("product_id,product_name,aisle_id,department_id\n" + "".join(
        f"{p},Product {p},{27 if p == 1 else 3},1\n" for p in products))
    return folder


def random_journey(folder, **sizes):
    """Dunnhumby The Complete Journey raw files of `random_baskets`; product 1 is a beer."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ("household_key,BASKET_ID,DAY,PRODUCT_ID,QUANTITY,SALES_VALUE,STORE_ID,RETAIL_DISC,TRANS_TIME,"
              "WEEK_NO,COUPON_DISC,COUPON_MATCH_DISC\n")
    rows = [f"{u},{1000 * u + k},{k + 1},{i},1,1.0,1,0,1200,1,0,0\n" for u, k, items in random_baskets(**sizes) for i in items]
    (folder / "transaction_data.csv").write_text(header + "".join(rows))
    products = [f"{p},1,GROCERY,National,{'BEERS/ALES' if p == 1 else 'VEGETABLES'},"
                f"{'BEERS/ALES' if p == 1 else 'CARROTS'},1 LB\n" for p in range(1, 13)]
    (folder / "product.csv").write_text("PRODUCT_ID,MANUFACTURER,DEPARTMENT,BRAND,COMMODITY_DESC,SUB_COMMODITY_DESC,"
                                        "CURR_SIZE_OF_PRODUCT\n" + "".join(products))
    return folder


def random_sortofreal(folder, **sizes):
    """Dunnhumby Let's get sort-of-real `transactions_200601.csv` of `random_baskets` (one
    basket a day) and the given alcohol list `folder/alcohol.txt` (PRD1). Returns the options
    that pass the list."""
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rows = [f"200601,200601{k + 1:02d},1,9,1,1.0,PRD{i},CUST{u:04d},{1000 * u + k}\n"
            for u, k, items in random_baskets(**sizes) for i in items]
    (raw / "transactions_200601.csv").write_text(
        "SHOP_WEEK,SHOP_DATE,SHOP_WEEKDAY,SHOP_HOUR,QUANTITY,SPEND,PROD_CODE,CUST_CODE,BASKET_ID\n" + "".join(rows))
    (folder / "alcohol.txt").write_text("PRD1\n")
    return ["categories=[]", f"category_lists={{alcohol: {folder / 'alcohol.txt'}}}", "min_item_count=3"]
