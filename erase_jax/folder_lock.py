"""One job per folder at a time: an OS lock on `<folder>/.lock`.

    with FolderLock(run_dir, "train"):            # exclusive: a second holder is refused at once
        ...
    with FolderLock(run_dir, "unlearn", shared=True):   # many readers, no writer meanwhile
        ...

The lock is `flock(2)` on the file `<folder>/.lock`, taken without waiting (or, with
`wait=True`, waiting: for the short sections several jobs share, such as writing a scenario's
combined CSV). The kernel releases it when its holder exits in any way, SIGKILL included, so a
lock left by a dead process never blocks a later job: a lock that is refused is held by a live
process. An exclusive holder writes its pid, job and start time into the file, so a refusal
names them; the file is emptied on release and kept (deleting a lock file races with a process
opening it). flock is local to one machine: two machines sharing a folder over NFS are only
kept apart where the NFS client maps flock onto its lock protocol (Linux does).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = ".lock"


class FolderInUse(RuntimeError):
    """The folder's lock is held by another live process."""


class FolderLock:
    """`flock` on `<folder>/.lock` for the duration of a `with` block.

    An exclusive lock creates the folder; a shared one (for reading) needs it to exist.
    Raises FolderInUse at once when another process holds a conflicting lock (unless `wait`).
    """

    def __init__(self, folder: str | Path, job: str, shared: bool = False, wait: bool = False):
        self.folder = Path(folder)
        self.job = job
        self.shared = shared
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        if self.shared and not self.folder.is_dir():
            raise FileNotFoundError(f"cannot {self.job}: {self.folder} does not exist")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        if fd is None:  # a folder this process cannot write: no job can be writing it either
            return self
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if self.wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise FolderInUse(self._refusal(holder)) from None
        # Whatever the file names is stale once this lock is granted: an exclusive holder would
        # have kept it from being granted. Shared holders empty it; an exclusive one signs it.
        if _writable(fd):
            os.ftruncate(fd, 0)
        if not self.shared:
            os.pwrite(fd, f"pid {os.getpid()}, {self.job}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int | None:
        path = self.folder / LOCK_FILE
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if not self.shared:
                raise
        try:  # a shared lock needs only to read the file
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            if not self.shared:
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False

    def _refusal(self, holder: str) -> str:
        wanted = f"cannot {self.job}: {self.folder} is in use by "
        if holder:
            return wanted + f"another erase-jax process ({holder}); wait for it to finish or stop it"
        return wanted + ("another erase-jax process writing it" if self.shared else
                         "other erase-jax processes reading it (unlearn or retrain jobs)") + "; wait for them to finish"


def _writable(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()
