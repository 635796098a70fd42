"""Raw files in the downloads' formats: line writers for 30Music's idomaar files, and random raw
files of a chosen size (MovieLens, 30Music, #nowplaying) for the tests that need more users than
the hand-made tables (forget sets, training on a prepared folder)."""

from __future__ import annotations

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
