"""A grid finished in pieces through its archive (`erase_jax.grid.archive`): records written as
tasks finish, archived tasks taken as done only under the same settings, dependencies recomputed
only where a task to run needs them, and the leaderboard of archive + store equal to a one-go
run's; bad archive files are errors that name the file."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest

from erase_jax.cli import main
from erase_jax.grid.archive import RECORDS_DIR, Archive, ArchiveError, Results, default_folder, rebuild_records, select
from erase_jax.grid.command import DEFAULT_ARCHIVE, describe, execute_grid
from erase_jax.grid.leaderboard import COLUMNS, long_rows
from erase_jax.grid.planner import digest
from erase_jax.grid.schedule import execute
from erase_jax.grid.store import Store
from tests.conftest import REPO_ROOT
from tests.grid.conftest import SMOKE_FILE, leaderboard, without_timing
from tests.grid.test_planner import plan_of
from tests.grid.test_runs import grid_command

RECORD_LIMIT = 50_000  # bytes per archived task: no checkpoints, only what the leaderboard reads


def fake_record(task, **changes) -> dict:
    record = {"task": task.id, "kind": task.kind, "spec_hash": digest(task.spec), "spec": task.spec,
              "marker": {"task": task.id, "seconds": 1.0}, "files": {}}
    return {**record, **changes}


def write_records(folder, records) -> None:
    (folder / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / RECORDS_DIR / f"{record['task']}.json").write_text(json.dumps(record))


def test_only_the_tasks_that_remaining_tasks_need_run_and_archived_ones_are_recomputed_for_them(tmp_path):
    plan = plan_of(methods={"untouched": {}, "scif": {}})
    store = Store(tmp_path / "store")
    unlearn = {c.cell.method: c.unlearn for c in plan.cells}
    everything = set(plan.tasks)
    assert select(plan, store, everything).run == ()
    assert select(plan, store, set()).run == tuple(plan.tasks)  # no archive: every task without a marker

    # scif's run is left: it needs the trained model and the retrains, archived but not in this store
    selection = select(plan, store, everything - {unlearn["scif"]})
    train, reference = plan.cells[0].train, plan.cells[0].reference
    assert set(selection.run) == everything - {unlearn["untouched"]}
    assert selection.recompute == frozenset(everything - {unlearn["untouched"], unlearn["scif"]})
    assert selection.run.index(train) == 0 and selection.run[-1] == unlearn["scif"]

    # with the trained model and retrains in the store, only the method runs
    for task_id in plan.tasks[reference].deps + (train,):
        store.mark_done(task_id, {"seconds": 1.0})
    store.mark_done(reference, {"seconds": 1.0})
    assert select(plan, store, everything - {unlearn["scif"]}).run == (unlearn["scif"],)

    # a trained model not archived whose dependents all are is not needed
    fresh = Store(tmp_path / "fresh")
    selection = select(plan, fresh, everything - {train})
    assert selection.run == () and selection.skipped == frozenset({train})


def test_an_archived_record_of_other_settings_is_not_taken_as_done(tmp_path):
    plan = plan_of()
    changed = plan_of(settings={"train.epochs": 2})
    write_records(tmp_path, [fake_record(task) for task in plan.tasks.values()])
    archive = Archive(tmp_path)
    assert archive.done(plan) == set(plan.tasks) and archive.stale(plan) == set()
    assert archive.done(changed) == set()  # other settings: other task ids, none archived
    assert len(archive.stale(changed)) == len(plan.tasks)

    # a record under the plan's task id whose spec (and hash) is that of other settings
    task = next(t for t in plan.tasks.values() if t.kind == "unlearn")
    other_spec = {**task.spec, "unlearn": {**task.spec["unlearn"], "method_options": {"cg_iterations": 7}}}
    write_records(tmp_path, [fake_record(task, spec=other_spec, spec_hash=digest(other_spec))])
    archive = Archive(tmp_path)
    assert task.id not in archive.done(plan) and archive.stale(plan) == {task.id}
    other_method = {c.unlearn for c in plan.cells} - {task.id}
    # that method runs again, with what it needs
    assert set(select(plan, Store(tmp_path / "store"), archive.done(plan)).run) == set(plan.tasks) - other_method
    text = describe(plan, Store(tmp_path / "store"), 1, archive)
    assert f"{len(plan.tasks) - 1} of {len(plan.tasks)} tasks archived" in text and "1 records of other settings" in text


@pytest.mark.parametrize("content, error", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not an archive record"),
    (json.dumps({"task": "x"}), "not an archive record (needs ['files', 'kind', 'marker', 'spec', 'spec_hash'])"),
])
def test_a_bad_archive_file_is_an_error_naming_it(tmp_path, content, error):
    (tmp_path / RECORDS_DIR).mkdir()
    path = tmp_path / RECORDS_DIR / "unlearn-0123456789abcdef.json"
    path.write_text(content)
    with pytest.raises(ArchiveError, match="unlearn-0123456789abcdef.json") as raised:
        Archive(tmp_path)
    assert error in str(raised.value)


def test_an_edited_record_or_one_under_another_name_is_an_error(tmp_path, capsys):
    task = next(iter(plan_of().tasks.values()))
    edited = fake_record(task)
    edited["spec"] = {**edited["spec"], "folder": "elsewhere"}
    write_records(tmp_path, [edited])
    with pytest.raises(ArchiveError, match=f"{task.id}.json: spec_hash is not the hash of its spec"):
        Archive(tmp_path)
    (tmp_path / RECORDS_DIR / f"{task.id}.json").rename(tmp_path / RECORDS_DIR / "train-other.json")
    (tmp_path / RECORDS_DIR / "train-other.json").write_text(json.dumps(fake_record(task)))
    with pytest.raises(ArchiveError, match=f"train-other.json: holds the record of task '{task.id}'"):
        Archive(tmp_path)
    # the command checks the archive before anything runs
    assert main(["grid", str(SMOKE_FILE), "--out", str(tmp_path / "out"), "--archive", str(tmp_path), "--quiet"]) == 2
    assert "train-other.json: holds the record" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_default_archive_is_the_grids_results_folder_of_the_repository(tmp_path, monkeypatch, capsys):
    assert default_folder("smoke", REPO_ROOT) == REPO_ROOT / "experiments" / "results" / "grids" / "smoke"
    monkeypatch.chdir(tmp_path)
    assert main(["grid", str(SMOKE_FILE), "--dry-run", "--archive", "--out", str(tmp_path)]) == 2
    assert "run from the repository root, or name the archive folder" in capsys.readouterr().err
    monkeypatch.chdir(REPO_ROOT)
    assert main(["grid", str(SMOKE_FILE), "--dry-run", "--archive", "--out", str(tmp_path)]) == 0
    assert "the archive: experiments/results/grids/smoke: 0 of 8 tasks archived; to run: 8" in capsys.readouterr().out
    assert not (REPO_ROOT / "experiments" / "results" / "grids" / "smoke").exists()  # a dry run writes nothing
    assert DEFAULT_ARCHIVE == ""


def test_a_grid_finished_in_two_pieces_with_the_store_deleted_gives_the_one_go_leaderboard(smoke, tmp_path):
    one_go, plan, _ = smoke
    archive = tmp_path / "archive"
    # piece one: the smoke run's store archived (a run without --archive, taken into the archive)
    _, summary, _ = execute_grid(SMOKE_FILE, one_go, quiet=True, archive=archive)
    assert summary.executed == [] and len(list((archive / RECORDS_DIR).glob("*.json"))) == len(plan.tasks)
    sizes = {p.stem: p.stat().st_size for p in (archive / RECORDS_DIR).glob("*.json")}
    assert max(sizes.values()) < RECORD_LIMIT, sizes
    records = {p.stem: json.loads(p.read_text()) for p in (archive / RECORDS_DIR).glob("*.json")}
    reference = plan.cells[0].reference
    assert list(records[reference]["files"]) == ["retrain/unlearning.csv"] and records[reference]["marker"]["seconds"] > 0
    # what piece one had not finished: the retrains' evaluation and one method
    untouched = next(c.unlearn for c in plan.cells if c.cell.method == "untouched")
    for task_id in (reference, untouched):
        (archive / RECORDS_DIR / f"{task_id}.json").unlink()

    # piece two: a new store; the archived trained model and retrains are recomputed, scif is not
    out = tmp_path / "second"
    _, summary, written = execute_grid(SMOKE_FILE, out, workers=2, quiet=True, archive=archive)
    scif = next(c.unlearn for c in plan.cells if c.cell.method == "scif")
    assert summary.failed == {} and set(summary.executed) == set(plan.tasks) - {scif}
    assert summary.reused == [scif] and (archive / "leaderboard.csv") in written
    assert len(list((archive / RECORDS_DIR).glob("*.json"))) == len(plan.tasks)
    board = leaderboard(out)
    pd.testing.assert_frame_equal(without_timing(board), without_timing(leaderboard(one_go)))
    assert (archive / "leaderboard.csv").read_text() == (out / "smoke" / "leaderboard.csv").read_text()
    # the archived method's rows are the archive's, to the last digit, timings included
    rows = lambda frame: frame[frame["cell"] == scif].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows(board), rows(leaderboard(one_go)))


@pytest.mark.slow
def test_a_grid_stopped_then_rerun_on_an_empty_store_with_its_archive_finishes_alike(smoke, tmp_path):
    archive, out = tmp_path / "archive", tmp_path / "first"
    records = archive / RECORDS_DIR
    process = subprocess.Popen([*grid_command(out), "--archive", str(archive)], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(list(records.glob("reference-*.json"))) == 0:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # the leaderboard of what finished is written, then the grid ends
    process.wait()
    assert process.returncode == 128 + signal.SIGTERM, process.stderr.read().decode()
    _, plan, _ = smoke
    archived = {p.stem for p in records.glob("*.json")}
    assert 6 <= len(archived) < len(plan.tasks)  # the trained model, the retrains, the reference
    first = leaderboard(archive.parent, archive.name)
    assert plan.cells[0].reference in set(first["cell"]) and set(first["cell"]) <= archived
    shutil.rmtree(out)

    _, summary, _ = execute_grid(SMOKE_FILE, tmp_path / "second", workers=2, quiet=True, archive=archive)
    methods = {c.unlearn for c in plan.cells}
    assert summary.failed == {} and set(summary.reused) == archived & methods
    # what the methods left need: the trained model, the retrains and their reference, recomputed
    assert set(summary.executed) == (set() if methods <= archived else set(plan.tasks) - (archived & methods))
    assert {p.stem for p in records.glob("*.json")} == set(plan.tasks)
    pd.testing.assert_frame_equal(without_timing(leaderboard(tmp_path / "second")), without_timing(leaderboard(smoke[0])))


def test_records_rebuilt_from_a_committed_leaderboard_give_its_rows(smoke, tmp_path):
    one_go, plan, _ = smoke
    board = leaderboard(one_go)
    archive = Archive(tmp_path / "archive")
    for record in rebuild_records(plan, board, "smoke/leaderboard.csv"):
        archive.write(record)
    archive = Archive(tmp_path / "archive")  # read back and checked
    assert archive.done(plan) == {t for c in plan.cells for t in (c.reference, c.unlearn)}
    assert select(plan, Store(tmp_path / "store"), archive.done(plan)).run == ()  # nothing left to run
    rows = pd.DataFrame(long_rows(plan, Results(plan, Store(tmp_path / "store"), archive)), columns=list(COLUMNS))
    pd.testing.assert_frame_equal(rows.astype(str), board)  # every row, timings included
    marker = archive.records[plan.cells[0].reference]["marker"]
    assert marker["rebuilt_from"] == "smoke/leaderboard.csv" and "seconds" not in marker


class Instant:
    """An executor of one worker whose tasks finish at once (their marker written), in order."""

    workers = 1

    def __init__(self):
        self.order = []

    def submit(self, task, store):
        from concurrent.futures import Future

        from erase_jax.grid.executors.base import Outcome

        self.order.append(task.id)
        store.mark_done(task.id, {"seconds": 0.0})
        future = Future()
        future.set_result(Outcome(task.id, True, 0.0))
        return future

    def shutdown(self):
        pass


def test_cells_finish_one_after_another_so_a_stopped_grid_leaves_few_half_done(tmp_path):
    plan = plan_of(methods={"untouched": {}, "scif": {}}, seeds=[2, 3])
    executor = Instant()
    summary = execute(plan, Store(tmp_path / "store"), executor, progress=False)
    assert sorted(summary.executed) == sorted(plan.tasks)
    # plan order: seed 2's training, retrains, reference and method before seed 3's training
    assert executor.order == list(plan.tasks)
    assert executor.order.index(plan.cells[0].unlearn) < executor.order.index(plan.cells[1].train)
