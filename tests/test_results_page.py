"""The results page is generated from the result files, and every result carries its provenance."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
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


def test_the_committed_results_page_is_what_the_result_files_give():
    page = script("results_page")
    assert (BENCHMARKS / "RESULTS.md").read_text() == page.render(), (
        "benchmarks/RESULTS.md differs from the result files: run python benchmarks/results_page.py")


def test_the_page_links_only_to_files_that_exist():
    text = (BENCHMARKS / "RESULTS.md").read_text()
    cited = set(re.findall(r"`((?:benchmarks|experiments)/results/[^`]+)`", text))
    assert cited, "the page cites no result file"
    assert sorted(p for p in cited if not (REPO_ROOT / p).is_file()) == []
    for link in re.findall(r"\]\((\.\./[^)#]+)", text):
        assert (BENCHMARKS / link).resolve().exists(), link


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
