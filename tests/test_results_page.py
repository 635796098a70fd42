"""The results pages are generated from the result files, and every result carries its provenance."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"


def script(name: str):
    """A module of `benchmarks/` (a scripts folder, not a package), imported from its file."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@cache
def generated() -> tuple[object, dict[str, str]]:
    """The page generator and the pages it writes, by path from the repository root."""
    page = script("results_page")
    return page, page.pages()


def test_every_committed_results_page_is_what_the_result_files_give():
    page, texts = generated()
    assert page.INDEX in texts and len(texts) > 1
    assert page.stale(texts) == [], "a results page differs from the result files: run python benchmarks/results_page.py"


def test_a_stale_or_left_over_page_is_found(tmp_path, monkeypatch):
    page, texts = generated()
    for path, text in texts.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    monkeypatch.setattr(page, "REPO_ROOT", tmp_path)
    assert page.stale(texts) == []
    changed = next(path for path in texts if path != page.INDEX)
    (tmp_path / changed).write_text(texts[changed].replace("0.", "1.", 1))
    (tmp_path / page.PAGES / "gone.md").write_text("# a topic no module writes\n")
    assert page.stale(texts) == [changed, f"{page.PAGES}/gone.md"]


def headings(text: str) -> set[str]:
    """The fragments a link may name on a page."""
    anchor = generated()[0].anchor
    return {anchor(line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("#")}


def test_the_pages_link_only_to_files_and_headings_that_exist():
    _, texts = generated()
    for path, text in texts.items():
        cited = set(re.findall(r"`((?:benchmarks|experiments)/results/[^`]+)`", text))
        assert sorted(p for p in cited if not (REPO_ROOT / p).is_file()) == [], path
        folder = (REPO_ROOT / path).parent
        for link, fragment in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", text):
            target = (folder / link).resolve() if link else REPO_ROOT / path
            assert target.exists(), f"{path}: {link}"
            if fragment:
                assert fragment in headings(texts[str(target.relative_to(REPO_ROOT))]), f"{path}: {link}#{fragment}"
    assert any("results/" in text for text in texts.values()), "the pages cite no result file"


def provenance_blocks(data: dict) -> list[dict] | None:
    """The file's provenance block, or one per run where a file collects separate runs (None if a run lacks one)."""
    if "provenance" in data:
        return [data["provenance"]]
    runs = data.get("models") or data.get("runs") or data
    blocks = []
    for entry in runs.values():
        if not isinstance(entry, dict):
            continue
        if "provenance" in entry:
            blocks.append(entry["provenance"])
        elif all(isinstance(part, dict) and "provenance" in part for part in entry.values()):  # before / after pairs
            blocks += [part["provenance"] for part in entry.values()]
        else:
            return None
    return blocks or None


def test_every_result_file_carries_its_provenance():
    fields = {"command", "config", "commit", "machine", "date"}
    missing = []
    for path in sorted([*(REPO_ROOT / "benchmarks" / "results").glob("*.json"), *(REPO_ROOT / "experiments" / "results").glob("*.json")]):
        blocks = provenance_blocks(json.loads(path.read_text()))
        if blocks is None or any(not fields <= set(block) for block in blocks):
            missing.append(str(path.relative_to(REPO_ROOT)))
    assert missing == []


def test_provenance_of_a_run_now():
    provenance = script("provenance")
    block = provenance.provenance(config={"seed": 2}, argv=[str(BENCHMARKS / "train_speed.py"), "--epochs", "1"])
    assert block["command"] == "python benchmarks/train_speed.py --epochs 1"
    assert block["config"] == {"seed": 2}
    assert re.fullmatch(r"[0-9a-f]{7,}|unknown", block["commit"])
    assert block["machine"]["cpu_count"] and block["machine"]["description"]
    assert block["date"].endswith("+00:00")
