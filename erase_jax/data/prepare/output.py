"""`erase-jax data prepare`: run a preparer and write its folder atomically.

The output folder's name is the data set's name (RecBole and the loaders find `{name}.inter` or
`{name}_merged.json` in a folder of that name), so `--out data/ml-1m` writes `ml-1m.inter`.
Everything is written to a temporary folder beside the target and renamed onto it at the end:
a failure (bad input, a full disk, Ctrl-C) leaves no folder, or the previous one untouched.

What a prepared folder holds (data-and-evaluation spec 1.2-1.5):

* layout "atomic" (CF, SBR): `{name}.inter` (`user_id:token item_id:token rating:float
  timestamp:float`, the original's columns) and `{name}.item` (`item_id:token`, the
  preparer's extra token columns, `categories:token_seq`: genres and sensitive categories, the
  field the loader reads categories from);
* layout "baskets" (NBR): `{name}_merged.json` (`{user: [[item, ...], ...]}`, users and items
  re-indexed from 0 in order of first appearance, as the reality-check files) with
  `item_map.csv` / `user_map.csv` (new id -> raw id, the mapping the original never saved);
* `sensitive_asins_{category}.txt`: the sensitive items present in the data, one token per line,
  in the written id space (the original's names, spec 1.5);
* extra CSV tables a preparer adds (`Prepared.tables`; the session data sets' `sessions.csv`,
  written session id -> raw session id);
* `stats.json`: the preparer and its options, the steps with their statistics, each sensitive
  category's rule and counts, the `data forget-set` defaults, and the one-line summary.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import write_atomic_inter
from erase_jax.data.interactions import Interactions
from erase_jax.data.prepare.base import Prepared, build_preparer
from erase_jax.data.prepare.download import fetch_raw_files
from erase_jax.data.prepare.resume import StepCache
from erase_jax.data.prepare.steps import StepLog, summary_line
from erase_jax.data.scenarios import request_order

STATS_FILE = "stats.json"
SENSITIVE_LIST = "sensitive_asins_{category}.txt"
CATEGORY_FIELD = "categories"


def prepare_dataset(
    name: str, raw: str | Path, out: str | Path | None = None, options: list[str] = (),
    overwrite: bool = False, quiet: bool = False, download: bool = False,
    checksums: str | Path | None = None, mirror: str | None = None,
) -> dict:
    """Prepares data set `name` from the raw files in `raw` into `out` (default `data/<name>`);
    returns the stats.json record. `options`: `key=value` settings of the preparer's fields.

    `download`: first fetch the missing raw files into `raw` from their public URLs (or
    `mirror`), verified against the SHA-256 sums of `checksums` (`download` module doc).
    A rerun after a failure reuses the steps the failed run finished (`resume` module doc)."""
    preparer = build_preparer(name, options)
    out = Path(out) if out else Path("data") / preparer.name
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if download:
        fetch_raw_files(preparer, raw, checksums, mirror, quiet)
    cache = StepCache(out, {"preparer": preparer.name, "options": _plain(dataclasses.asdict(preparer))})
    log = StepLog(out.name, preparer.categories, quiet, groups=getattr(preparer, "groups", "sessions"), cache=cache)
    prepared = preparer.build(Path(raw), log)
    with atomic_folder(out) as folder:
        written = _LAYOUT_WRITERS[prepared.layout](folder, out.name, prepared)
        lists = write_sensitive_lists(folder, written, prepared.sensitive)
        for file_name, columns in prepared.tables.items():
            pd.DataFrame(columns).to_csv(folder / file_name, index=False, lineterminator="\n")
        record = {
            "dataset": out.name,
            "preparer": preparer.name,
            "task": preparer.task,
            "options": _plain(dataclasses.asdict(preparer)),
            "raw": {"folder": str(Path(raw).resolve()), "files": _file_sizes(Path(raw))},
            "layout": prepared.layout,
            "steps": log.steps,
            "sensitive": {c: {"file": lists[c], **prepared.sensitive[c]} for c in prepared.sensitive},
            "forget_defaults": dict(preparer.forget_defaults),
            "notes": _plain(prepared.notes),
            "summary": summary_line(out.name, log.steps),
        }
        (folder / STATS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    cache.clear()
    if not quiet:
        print(record["summary"], file=sys.stderr)
    return record


@contextlib.contextmanager
def atomic_folder(out: Path):
    """Yields an empty temporary folder beside `out`; on success it replaces `out` (an existing
    `out` is removed only then), on failure it is deleted."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    try:
        yield temporary
        if not out.exists():
            os.replace(temporary, out)
            return
        previous = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
        os.replace(out, previous / out.name)
        try:
            os.replace(temporary, out)
        except BaseException:
            os.replace(previous / out.name, out)  # the previous folder back in place
            raise
        finally:
            shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_atomic_files(folder: Path, name: str, prepared: Prepared) -> Interactions:
    """`{name}.inter` and `{name}.item`; returns the interactions as written."""
    inter = prepared.interactions
    write_atomic_inter(folder / f"{name}.inter", inter)
    columns = {"item_id:token": inter.item_tokens}
    for field, values in prepared.item_fields.items():
        columns[f"{field}:token"] = _checked_tokens(np.asarray(values).astype(str), field)
    labels = [[] for _ in range(inter.n_items)]
    for category in sorted(inter.item_categories or {}):
        token = _checked_tokens(np.asarray([category]), "category", spaces=False)[0]
        for item in inter.item_categories[category]:
            labels[item].append(token)
    columns[f"{CATEGORY_FIELD}:token_seq"] = [" ".join(item_labels) for item_labels in labels]
    pd.DataFrame(columns).to_csv(folder / f"{name}.item", sep="\t", index=False,
                                 quoting=csv.QUOTE_NONE, lineterminator="\n")
    return inter


def write_basket_files(folder: Path, name: str, prepared: Prepared) -> Interactions:
    """`{name}_merged.json`, `item_map.csv`, `user_map.csv`; returns the interactions with the
    re-indexed ids as their tokens."""
    inter = prepared.interactions
    order = np.lexsort((np.arange(len(inter)), inter.sessions, inter.users))
    users, items, baskets = inter.users[order], inter.items[order], inter.sessions[order]
    merged: dict[str, list[list[int]]] = {}
    starts = np.flatnonzero(np.r_[True, baskets[1:] != baskets[:-1]]) if len(order) else np.zeros(0, int)
    for start, end in zip(starts, np.r_[starts[1:], len(order)]):
        merged.setdefault(str(users[start]), []).append(items[start:end].tolist())
    with open(folder / f"{name}_merged.json", "w", encoding="utf-8") as handle:
        json.dump(merged, handle, separators=(",", ":"))
    for kind, raw_tokens in (("item", inter.item_tokens), ("user", inter.user_tokens)):
        pd.DataFrame({f"{kind}_id": np.arange(len(raw_tokens)), f"raw_{kind}_id": raw_tokens}).to_csv(
            folder / f"{kind}_map.csv", index=False, lineterminator="\n")
    return dataclasses.replace(inter, item_tokens=np.arange(inter.n_items).astype(str),
                               user_tokens=np.arange(inter.n_users).astype(str))


_LAYOUT_WRITERS = {"atomic": write_atomic_files, "baskets": write_basket_files}


def write_sensitive_lists(folder: Path, inter: Interactions, sensitive: dict[str, dict]) -> dict[str, str]:
    """`sensitive_asins_{category}.txt` per category: its items' tokens, in `request_order`
    (numeric when every token is an integer). Returns category -> file name."""
    names = {}
    for category in sensitive:
        tokens = inter.item_tokens[inter.category_items(category)]
        names[category] = SENSITIVE_LIST.format(category=category)
        text = "".join(f"{t}\n" for t in tokens[request_order(tokens)])
        (folder / names[category]).write_text(text, encoding="utf-8")
    return names


def read_stats(folder: str | Path) -> dict:
    """The stats.json record of a prepared folder (FileNotFoundError naming the folder)."""
    path = Path(folder) / STATS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a prepared data set (no {STATS_FILE}; "
                                "prepare it with `erase-jax data prepare`)")
    return json.loads(path.read_text(encoding="utf-8"))


def _checked_tokens(values: np.ndarray, what: str, spaces: bool = True) -> np.ndarray:
    forbidden = "\t\r\n" + ("" if spaces else " ")
    bad = [v for v in values if not v or any(c in v for c in forbidden)]
    if bad:
        raise ValueError(f"{what} token {bad[0]!r} is empty or holds a tab, line break{'' if spaces else ' or space'}")
    return values


def _file_sizes(raw: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(raw.iterdir()) if p.is_file()} if raw.is_dir() else {}


def _plain(value):
    """JSON-ready: tuples as lists, numpy numbers as Python numbers, paths as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
