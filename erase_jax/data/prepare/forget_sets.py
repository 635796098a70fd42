"""`erase-jax data forget-set`: the original's forget files from a prepared folder.

The data are read as written (`{name}.inter` with its `.item` categories, or the merged basket
JSON with its sensitive lists), without threshold or k-core, because the original's generators
count T = int(fraction x all rows of the file) (spec 3.2.2). The requests are drawn by
`erase_jax.data.scenarios`, the same functions `erase-jax unlearn` draws them with:

* sensitive:<category>, atomic data: `sensitive_forget_set` (whole users, seeded Python shuffle,
  the "fit" rule of the CF scripts or "reach" of the SBR scripts); basket data:
  `sensitive_basket_forget_set` (spec 3.2.3);
* random[:users|interactions]: `random_forget_set` / `random_basket_forget_set`.

Files (spec 1.5), in the prepared folder unless `out` is given:
`{ds}_unlearn_pairs_{method}_seed_{s}_unlearning_fraction_{f}.inter` (atomic data: the data's
typed columns, one line per forgotten row) or `.json` (basket data: the list of user ids);
method = `sensitive_category_{cat}`, `random` (interaction-level, the original's legacy meaning)
or `random_users` (whole users, this project's default random scenario; the original has no
random generator for the benchmark's data sets, spec 3.1).

The rule and rating threshold default to the `forget_defaults` the preparer recorded in
stats.json (grocery and MovieLens: "fit", rating >= 3.5; spec 3.2.2); a folder without
stats.json gets "fit" and no threshold. A recorded eligibility filter (30music: users with >= 3
sensitive and >= 3 other rows) always applies. Every forget set of the grid is drawn before the first
file is written, so a failing combination (T = 0, no candidates) writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from erase_jax.data.atomic import read_atomic
from erase_jax.data.basket_csv import read_basket_folder
from erase_jax.data.forget_files import (
    basket_forget_file_name,
    forget_file_name,
    sensitive_method,
    write_basket_forget_file,
    write_forget_file,
)
from erase_jax.data.prepare.output import STATS_FILE, read_stats
from erase_jax.data.scenarios import random_forget_set, sensitive_forget_set
from erase_jax.data.scenarios.baskets import random_basket_forget_set, sensitive_basket_forget_set

DEFAULT_RULE = "fit"
MIN_BASKETS = 4  # the original's MIN_NBR_BASKET_COUNT (spec 1.4)
UNSET = object()  # "take the recorded default", distinct from None ("no threshold")


def write_forget_sets(
    folder: str | Path,
    scenario: str,
    fractions: list[float],
    seeds: list[int],
    category: str | None = None,
    random_unit: str = "users",
    rating_threshold=UNSET,
    rule: str | None = None,
    out: str | Path | None = None,
    quiet: bool = False,
) -> list[Path]:
    """Writes one forget file per (fraction, seed); returns their paths (module doc)."""
    folder = Path(folder)
    if scenario not in ("sensitive", "random"):
        raise ValueError(f"data forget-set writes the sensitive and random scenarios, not {scenario!r} "
                         "(spam: train with --set data.spam_ratio=..., the fakes are the forget set)")
    if scenario == "sensitive" and not category:
        raise ValueError("the sensitive scenario needs a category: --scenario sensitive:<category>")
    defaults = read_stats(folder).get("forget_defaults", {}) if (folder / STATS_FILE).is_file() else {}
    threshold = defaults.get("rating_threshold") if rating_threshold is UNSET else rating_threshold
    rule = rule or defaults.get("rule", DEFAULT_RULE)
    baskets = not (folder / f"{folder.name}.inter").is_file()
    inter = read_basket_folder(folder) if baskets else read_atomic(folder)
    if scenario == "sensitive":
        method = sensitive_method(category)
        if baskets:
            draw = lambda f, s: sensitive_basket_forget_set(inter, category, f, s, MIN_BASKETS)
        else:
            eligibility = {k: defaults[k] for k in ("min_sensitive_rows", "min_other_rows") if k in defaults}
            draw = lambda f, s: sensitive_forget_set(inter, category, f, s, rating_threshold=threshold, rule=rule,
                                                     **eligibility)
    else:
        method = "random_users" if random_unit == "users" else "random"
        if baskets:
            if random_unit != "users":
                raise ValueError(f"random unit {random_unit!r}: basket data forget whole users ('users')")
            draw = lambda f, s: random_basket_forget_set(inter, f, s, MIN_BASKETS)
        else:
            draw = lambda f, s: random_forget_set(inter, f, s, unit=random_unit)
    drawn = []
    for fraction in fractions:
        for seed in seeds:
            try:
                drawn.append((fraction, seed, draw(fraction, seed)))
            except (ValueError, KeyError) as error:
                message = error.args[0] if error.args else error
                raise ValueError(f"{folder.name}, {method}, fraction {fraction}, seed {seed}: {message}") from None
    target = Path(out) if out else folder
    target.mkdir(parents=True, exist_ok=True)
    name_file = basket_forget_file_name if baskets else forget_file_name
    write = write_basket_forget_file if baskets else write_forget_file
    written = []
    for fraction, seed, forget_set in drawn:
        path = target / name_file(folder.name, method, seed, fraction)
        write(path, inter, forget_set)
        written.append(path)
        if not quiet:
            rows = int(forget_set.removal_mask(inter).sum())
            print(f"wrote {path}: {len(forget_set)} requests (users), {rows} rows", file=sys.stderr)
    return written
