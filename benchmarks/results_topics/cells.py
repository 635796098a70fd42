"""How every topic of the results page writes a question: a `Section`, its cells, and tables whose
provenance (config, command, commit, machine) is said under them.

A topic module reads numbers through `read` and builds its questions from these helpers;
`benchmarks/results_page.py` lays the sections out as pages.
"""

from __future__ import annotations

from typing import NamedTuple

PROVENANCE_COLUMNS = ["config", "command", "commit", "machine"]
PUBLISHED = ["n/a (published)"] * 4


class Section(NamedTuple):
    """One question: its heading, the one-line answer the index gives, the lines under the heading,
    and its figures, (file name, SVG text) pairs written beside the pages (`results_pages/<name>`),
    which the body links to."""

    title: str
    answer: str
    body: list[str]
    figures: tuple[tuple[str, str], ...] = ()


def section(title: str, answer: str, intro: str, tabled: list[str], *files: str) -> Section:
    """The usual section: a paragraph on what was measured and how, the table, and the files it reads."""
    return Section(title, answer, [intro, "", *tabled, "", files_line(*files)])


def anchor(title: str) -> str:
    """The fragment a markdown renderer (GitHub's) gives a heading."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


# ------------------------------------------------------------------------------------------------
# formatting cells


def num(value, digits: int = 4) -> str:
    if value is None or value == "":
        return ""
    return f"{float(value):.{digits}f}"


def seconds(value) -> str:
    """Seconds with three significant digits (0.0109, 0.269, 7.17, 53.5, 1471)."""
    value = float(value)
    if value >= 100:
        return f"{value:.0f}"
    for limit, digits in ((10, 1), (1, 2), (0.1, 3), (0.01, 4)):
        if value >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.5f}"


def times(value: float) -> str:
    return f"{value:.1f}x"


def load_cell(start, end) -> str:
    """The 1-minute load average at the start and end of a run (either may be missing)."""
    first = lambda v: v[0] if isinstance(v, list) else v
    parts = [f"{first(v):.1f}" for v in (start, end) if v is not None]
    return " - ".join(parts)


def code(text: str) -> str:
    return f"`{text}`" if text else ""


def files_line(*paths: str) -> str:
    return "Files: " + ", ".join(code(p) for p in paths) + "."


# ------------------------------------------------------------------------------------------------
# provenance cells (`benchmarks/provenance.py` writes the blocks they read)


def config_cell(config) -> str:
    if config is None:
        return ""
    if isinstance(config, str):
        return code(config)
    if isinstance(config, dict):
        if isinstance(config.get("model"), dict):  # the RecBole baselines: the model's settings
            return "RecBole: " + ", ".join(f"{k} {v}" for k, v in config["model"].items())
        main = config.get("config") or config.get("file") or config.get("configs")
        if isinstance(main, list):
            main = ", ".join(main)
        extras = []
        for key, value in config.items():
            if key in ("config", "file", "configs") or value in (None, [], {}) or isinstance(value, dict):
                continue
            if isinstance(value, str) and "this file" in value:  # a pointer to the resolved settings
                continue
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            extras.append(f"{key} {shown}" if key == "methods" else f"{key}={shown}")
        if main:
            return code(str(main)) + ("; " + ", ".join(extras) if extras else "")
        return ", ".join(extras)
    return str(config)


def commit_cell(provenance: dict, step: str | None = None) -> str:
    commit = provenance.get("commit", "unknown")
    if commit == "mixed" and step is not None:
        commit = provenance.get("commits", {}).get(step, "unknown")
    if commit in ("unknown", "mixed"):
        recorded = provenance.get("recorded_in")
        return f"unknown (recorded in {recorded})" if recorded else "unknown"
    dirty = " (+ local changes)" if provenance.get("dirty") else ""
    return f"{commit}{dirty}"


def machine_cell(provenance: dict) -> str:
    machine = provenance.get("machine") or {}
    return machine.get("description", "unknown") if isinstance(machine, dict) else str(machine)


def source(provenance: dict, step: str | None = None) -> list[str]:
    """The four provenance cells of a row."""
    return [config_cell(provenance.get("config")), code(provenance.get("command", "")),
            commit_cell(provenance, step), machine_cell(provenance)]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table whose provenance cells (the last four columns, when present) are said
    under it: once when every row shares them, else as a `run` column of letters with a legend."""
    n_plain = len(header) - len(PROVENANCE_COLUMNS) if header[-len(PROVENANCE_COLUMNS):] == PROVENANCE_COLUMNS else len(header)
    escape = lambda cells: "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    if n_plain == len(header):
        return [escape(header), "|" + "---|" * len(header), *(escape(row) for row in rows)]
    runs: dict[tuple[str, ...], str] = {}
    for row in rows:
        runs.setdefault(tuple(str(c) for c in row[n_plain:]), chr(ord("A") + len(runs)))
    said = lambda cells: ", ".join(f"{name} {cell}" for name, cell in zip(PROVENANCE_COLUMNS, cells, strict=True) if cell)
    if len(runs) == 1:
        plain = [escape(header[:n_plain]), "|" + "---|" * n_plain, *(escape(row[:n_plain]) for row in rows)]
        return [*plain, "", f"Every row: {said(next(iter(runs)))}."]
    lines = [escape([*header[:n_plain], "run"]), "|" + "---|" * (n_plain + 1)]
    lines += [escape([*row[:n_plain], runs[tuple(str(c) for c in row[n_plain:])]]) for row in rows]
    # a provenance column every run shares is said once, after the legend
    shared_columns = [i for i in range(len(PROVENANCE_COLUMNS)) if len({cells[i] for cells in runs}) == 1]
    own = lambda cells: tuple("" if i in shared_columns else cell for i, cell in enumerate(cells))
    legend = [f"- {letter}: {said(own(cells))}" for cells, letter in runs.items()]
    first = next(iter(runs))
    common = ", ".join(f"{PROVENANCE_COLUMNS[i]} {first[i]}" for i in shared_columns if first[i])
    return [*lines, "", *legend, *([f"- every run: {common}"] if common else [])]
