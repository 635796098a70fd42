"""`leaderboard.html`: the leaderboard as one self-contained page that opens in any browser.

    write_page(folder, title)   # reads folder/leaderboard.csv (+ failures.csv), writes folder/leaderboard.html

Everything is inline: the style, a few lines of script that make every table sortable (click a
header; numbers sort by value, the rest as text, empty cells last), and the figures as SVG
(`svg.line_chart`), so the page needs no server, no network and nothing installed beyond the
project. Its content is `views.sections` of the CSV: per scenario, data set and model the tables
(methods side by side, gaps to the retrain, cost) and the trajectories over the checkpoints,
then the failures. The page depends on the CSV alone, and the same CSV gives the same bytes: no
dates, no random ids, fixed number formats. The script marks each table `data-sortable="ready"`
once it is wired, which is what a headless browser checks (tests/grid/test_page.py).
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from erase_jax.grid import svg, views

PAGE_FILE = "leaderboard.html"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
svg { font-size: 11px; } .chart-title { font-weight: 600; font-size: 12px; }
"""
# sorts a table's body by the clicked column: data-value (a number) where present, else the text
SCRIPT = """
(function () {
  function key(row, i) {
    var cell = row.cells[i], value = cell.getAttribute("data-value");
    return value !== null ? parseFloat(value) : cell.textContent.trim();
  }
  function compare(a, b) {
    if (a === "" || b === "") { return (a === "") - (b === ""); }
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b));
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, i) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending", body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a, i), y = key(b, i), empty = (x === "") - (y === "");
          return empty || (ascending ? compare(x, y) : compare(y, x));
        });
        table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
    table.setAttribute("data-sortable", "ready");
  });
})();
"""


def write_page(folder: str | Path, title: str) -> Path:
    """Writes `folder/leaderboard.html` from `folder/leaderboard.csv` (and `failures.csv` when
    present); returns its path."""
    folder = Path(folder)
    board = pd.read_csv(folder / "leaderboard.csv", dtype=str, keep_default_na=False)
    failures_path = folder / "failures.csv"
    failures = pd.read_csv(failures_path, dtype=str, keep_default_na=False) if failures_path.exists() else None
    path = folder / PAGE_FILE
    path.write_text(render(board, failures, title), encoding="utf-8")
    return path


def render(board: pd.DataFrame, failures: pd.DataFrame | None, title: str) -> str:
    """The page for a leaderboard (the CSV's columns, as strings) and its failures."""
    sections = views.sections(board)
    body = [f"<h1>Leaderboard: {_esc(title)}</h1>"]
    if not sections:
        body.append("<p>No finished cell yet.</p>")
    if sections:
        body.append("<ul>" + "".join(f'<li><a href="#s{n}">{_esc(s.title)}</a></li>' for n, s in enumerate(sections)) + "</ul>")
    for n, section in enumerate(sections):
        body += [f'<section id="s{n}"><h2>{_esc(section.title)}</h2>',
                 f"<p>Checkpoint {section.checkpoint} (all requests); mean &plusmn; std over seeds "
                 f"{_esc(', '.join(section.seeds))}. Click a column to sort.</p>"]
        body += [_table(table) for table in section.tables]
        if section.trajectories:
            body.append("<h3>Trajectories over the checkpoints</h3><div class=\"figures\">")
            labels = [f"{c + 1}/{section.checkpoint + 1}" for c in range(section.checkpoint + 1)]
            body += [svg.line_chart(measure, labels, lines) for measure, lines in section.trajectories.items()]
            body.append("</div></section>")
        else:
            body.append("</section>")
    if failures is not None and not failures.empty:
        body += ["<section id=\"failures\"><h2>Failures</h2>", _failures(failures), "</section>"]
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>Leaderboard: {_esc(title)}</title>", f"<style>{STYLE}</style></head><body>",
                      *body, f"<script>{SCRIPT}</script>", "</body></html>", ""])


def _table(table: views.Table) -> str:
    head = "".join(f"<th scope=\"col\">{_esc(t)}</th>" for t in ("method", *table.titles))
    rows = []
    for method, cells in table.rows:
        tds = "".join("<td></td>" if cell is None else f'<td data-value="{cell.mean!r}">{_esc(cell.text("±"))}</td>'
                      for cell in cells)
        rows.append(f"<tr><td>{_esc(method)}</td>{tds}</tr>")
    return (f'<table class="sortable"><caption>{_esc(table.caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _failures(failures: pd.DataFrame) -> str:
    columns = [c for c in ("task", "status", "kind", "dataset", "model", "scenario", "method", "seed", "error")
               if c in failures]
    head = "".join(f"<th scope=\"col\">{_esc(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{_esc(row[c])}</td>" for c in columns) + "</tr>" for _, row in failures.iterrows())
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _esc(text) -> str:
    return html.escape(str(text))
