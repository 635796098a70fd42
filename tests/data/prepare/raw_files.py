"""Raw MovieLens files of a chosen size, for the tests that need more users than the hand-made
tables of `test_movielens.py` (forget sets, training on a prepared folder)."""

from __future__ import annotations

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
