"""A failed or killed `erase-jax data prepare` reruns without redoing its finished read step.

Checked for Amazon Grocery, Goodreads and MovieLens (the preparers whose read takes minutes on
the real files): a failure injected after the read step leaves no output folder but the saved step; the
rerun, with the raw reader made to fail if called, writes files byte-identical to an
uninterrupted run (and the same statistics) and removes the saved step; a changed raw file or
option redoes the step; a process killed with SIGKILL right after the step was saved resumes too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import erase_jax.data.prepare.amazon as amazon
import erase_jax.data.prepare.goodreads as goodreads
import erase_jax.data.prepare.movielens as movielens
from erase_jax.data.prepare import prepare_dataset
from tests.data.prepare.raw_files import random_goodreads, random_grocery, random_movielens

REPO = Path(__file__).resolve().parents[3]
CASES = {  # data set: (raw writer, module, its raw reader, a review file to change)
    "amazon_reviews_grocery_and_gourmet_food": (random_grocery, amazon, "read_reviews", "meta_Grocery_and_Gourmet_Food.jsonl.gz"),
    "goodreads": (random_goodreads, goodreads, "read_book_map", "book_id_map.csv"),
    "movielens": (random_movielens, movielens, "read_ratings", "movies.csv"),
}


def injected_failure(*args, **kwargs):
    raise RuntimeError("injected failure after the read step")


def step_redone(*args, **kwargs):
    raise AssertionError("the read step was redone")


def outputs(folder: Path) -> dict:
    """Every file's bytes, stats.json without the raw folder's path."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "stats.json"}
    stats = json.loads((folder / "stats.json").read_text())
    stats.pop("raw")
    return {**files, "stats.json": stats}


def fail_after_read(monkeypatch, name, module, raw, out, options=()):
    with monkeypatch.context() as patch:
        patch.setattr(module, "original_cf_steps", injected_failure)
        with pytest.raises(RuntimeError, match="injected"):
            prepare_dataset(name, raw, out, list(options), quiet=True)
    assert not out.exists()
    assert sorted(p.name for p in (out.parent / f".{out.name}.steps").iterdir()) == ["read.json", "read.npz"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rerun_skips_the_finished_step_and_matches_an_uninterrupted_run(tmp_path, monkeypatch, name):
    write_raw, module, reader, _ = CASES[name]
    raw = write_raw(tmp_path / "raw")
    uninterrupted = tmp_path / "a" / name
    prepare_dataset(name, raw, uninterrupted, quiet=True)
    assert not (tmp_path / "a" / f".{name}.steps").exists()

    out = tmp_path / "b" / name
    fail_after_read(monkeypatch, name, module, raw, out)
    with monkeypatch.context() as patch:
        patch.setattr(module, reader, step_redone)
        prepare_dataset(name, raw, out, quiet=True)
    assert outputs(out) == outputs(uninterrupted)
    assert not (tmp_path / "b" / f".{name}.steps").exists()


@pytest.mark.parametrize("change", ["raw file", "option"])
def test_changed_raw_file_or_option_redoes_the_step(tmp_path, monkeypatch, change):
    name = "amazon_reviews_grocery_and_gourmet_food"
    write_raw, module, reader, changed_file = CASES[name]
    raw = write_raw(tmp_path / "raw")
    out = tmp_path / "b" / name
    fail_after_read(monkeypatch, name, module, raw, out)
    options = []
    if change == "raw file":
        os.utime(raw / changed_file, ns=(0, 0))
    else:
        options = ["categories=[meat]"]
    calls = []
    original = getattr(module, reader)
    monkeypatch.setattr(module, reader, lambda *a, **k: calls.append(1) or original(*a, **k))
    record = prepare_dataset(name, raw, out, options, quiet=True)
    assert calls == [1]
    assert list(record["sensitive"]) == (["meat"] if options else ["meat", "alcohol"])


KILLED_AFTER_SAVE = """
import os, signal, sys
import erase_jax.data.prepare.resume as resume
save = resume.StepCache.save
def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
resume.StepCache.save = save_then_die
from erase_jax.cli import main
main(sys.argv[1:])
"""


def test_killed_process_resumes(tmp_path, monkeypatch):
    """SIGKILL right after the read step is saved: the rerun reuses it (checked in stats.json's
    log line) and writes what an uninterrupted run writes."""
    name = "amazon_reviews_grocery_and_gourmet_food"
    raw = random_grocery(tmp_path / "raw")
    out = tmp_path / "b" / name
    command = ["data", "prepare", name, "--raw", str(raw), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_SAVE, *command], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()
    rerun = subprocess.run([sys.executable, "-m", "erase_jax.cli", *command], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "saved by an earlier run" in rerun.stderr
    uninterrupted = tmp_path / "a" / name
    prepare_dataset(name, raw, uninterrupted, quiet=True)
    assert outputs(out) == outputs(uninterrupted)
