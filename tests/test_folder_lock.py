"""Folder locks: one writer or many readers; a refusal names the holder; a killed holder's lock is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from erase_jax.folder_lock import LOCK_FILE, FolderInUse, FolderLock
from tests.conftest import REPO_ROOT


def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(tmp_path):
    folder = tmp_path / "scenario" / "scif"
    with FolderLock(folder, "unlearn scif"):
        with pytest.raises(FolderInUse) as refused:
            with FolderLock(folder, "unlearn scif"):
                pass
        with pytest.raises(FolderInUse, match=f"cannot retrain: .* \\(pid {os.getpid()}, unlearn scif"):
            with FolderLock(folder, "retrain", shared=True):
                pass
    message = str(refused.value)
    assert message.startswith(f"cannot unlearn scif: {folder} is in use by another erase-jax process (pid {os.getpid()}, ")
    assert (folder / LOCK_FILE).read_text() == ""  # emptied on release
    with FolderLock(folder, "unlearn scif"):  # and free again
        pass


def test_readers_share_and_keep_a_writer_out(tmp_path):
    with FolderLock(tmp_path, "unlearn", shared=True), FolderLock(tmp_path, "retrain", shared=True):
        with pytest.raises(FolderInUse, match=f"cannot train: {tmp_path} is in use by other erase-jax processes reading it"):
            with FolderLock(tmp_path, "train"):
                pass
    with FolderLock(tmp_path, "train"):
        pass
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with FolderLock(tmp_path / "absent", "unlearn", shared=True):
            pass
    assert not (tmp_path / "absent").exists()


def test_the_lock_of_a_killed_holder_does_not_block(tmp_path):
    """SIGKILL leaves the lock file naming the dead holder; the kernel has released the lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from erase_jax.folder_lock import FolderLock\n"
         f"with FolderLock({str(tmp_path)!r}, 'unlearn scif'):\n    print('held', flush=True); time.sleep(300)"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderInUse, match=f"pid {holder.pid}, unlearn scif"):
        with FolderLock(tmp_path, "unlearn scif"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / LOCK_FILE).read_text()  # left behind, not held
    with FolderLock(tmp_path, "unlearn scif"):
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()}, unlearn scif")
