"""The progress bar of the streaming readers and downloads: shown on a terminal only, off with
`--quiet` or ERASE_JAX_NO_PROGRESS, and counting the compressed bytes of a gzip file (its
final count is the file's size on disk, not the decompressed size)."""

from __future__ import annotations

import gzip
import io

from erase_jax.data.prepare import streams


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_a_terminal(monkeypatch) -> Terminal:
    """stderr replaced by a terminal (inside the test: pytest swaps stderr after fixtures run)."""
    screen = Terminal()
    monkeypatch.setattr(streams.sys, "stderr", screen)
    monkeypatch.delenv(streams.NO_PROGRESS_ENV, raising=False)
    return screen


def test_bar_only_on_a_terminal_without_quiet_or_the_variable(monkeypatch):
    on_a_terminal(monkeypatch)
    bar = streams.progress_bar(10, "file")
    assert bar is not None
    bar.close()
    assert streams.progress_bar(10, "file", quiet=True) is None
    monkeypatch.setenv(streams.NO_PROGRESS_ENV, "1")
    assert streams.progress_bar(10, "file") is None
    monkeypatch.delenv(streams.NO_PROGRESS_ENV)
    monkeypatch.setattr(streams.sys, "stderr", io.StringIO())  # not a terminal (a CI log, pytest)
    assert streams.progress_bar(10, "file") is None


def test_gzip_reader_counts_compressed_bytes(tmp_path, monkeypatch):
    screen = on_a_terminal(monkeypatch)
    path = tmp_path / "reviews.jsonl.gz"
    text = "".join(f'{{"user_id": "U{k}", "n": {k}}}\n' for k in range(3000))
    path.write_bytes(gzip.compress(text.encode()))
    monkeypatch.setattr(streams, "PROGRESS_EVERY_LINES", 500)
    totals = []
    original = streams.progress_bar

    def recording(total, description, quiet=False):
        bar = original(total, description, quiet)
        totals.append(bar)
        return bar

    monkeypatch.setattr(streams, "progress_bar", recording)
    assert sum(1 for _ in streams.json_records(path, ("user_id",))) == 3000
    [bar] = totals
    assert bar.total == bar.n == path.stat().st_size < len(text)
    assert "reviews.jsonl.gz" in screen.getvalue()
