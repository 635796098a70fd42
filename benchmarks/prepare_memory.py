"""Peak memory and time of `erase-jax data prepare` on a generated Amazon reviews file of realistic size.

    python benchmarks/prepare_memory.py --gzip-mb 1000 --work /work/tmp-data \
        --out benchmarks/results/prepare_memory_amazon_grocery.json

Writes, under `--work` (outside the repository; deleted at the end unless `--keep`), a review file
`Grocery_and_Gourmet_Food.jsonl.gz` in the Amazon Reviews 2023 format (every field of a real review
record: rating, title, text of random words, images, asin, parent_asin, user_id, timestamp in ms,
helpful_vote, verified_purchase) until its compressed size reaches `--gzip-mb`, and a metadata file
`meta_Grocery_and_Gourmet_Food.jsonl.gz` with one record per parent_asin (some titles carry the
grocery rule's meat and alcohol keywords). Users and items are drawn from skewed distributions (a
few heavy reviewers and best sellers, a long tail of one-review users) so that the 5-core keeps a
part of the rows, as on the real file.

Then runs `python -m erase_jax.cli data prepare amazon_reviews_grocery_and_gourmet_food` on it in a
child process and records its wall time and peak resident memory (`ru_maxrss` of the child,
`os.wait4`), with the sizes, the row counts and the preparer's summary.
The JSON also records the load average before and after (the machine is shared).

`--baseline PATH` (another checkout, e.g. the main branch before a change) prepares the same file
with that code too, alternating baseline and this checkout `--repeats` times, each child's own
peak (`os.wait4`), and records the ratios: a before/after comparison measured side by side.
`--reuse` keeps an already generated file of the same `--gzip-mb` under `--work`.

The file is generated in a child process of its own: on Linux a child's `ru_maxrss` starts at
its parent's resident size when it is spawned, so a prepare child spawned by the process that
held the generator's arrays would report at least that. Each run records `parent_peak_rss_mib`:
the child's peak is its own only where it exceeds that (records without the field were measured
from a generating parent and can overstate the preparer's peak).

    python benchmarks/prepare_memory.py --gzip-mb 200 --work /work/tmp-data --reuse --keep \
        --baseline /path/to/main --out benchmarks/results/prepare_memory_amazon_grocery_200mb_side_by_side.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from provenance import REPO_ROOT, provenance  # benchmarks/ is on sys.path when run as a script

STEM = "Grocery_and_Gourmet_Food"
DATASET = "amazon_reviews_grocery_and_gourmet_food"
BATCH = 50_000  # reviews generated and compressed at a time
ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
KEYWORD_TITLES = ("Smoked Beef Jerky", "Red Wine Gift Set", "Chicken Broth", "Craft Beer Sampler", "Pork Rinds")


def tokens(rng: np.random.Generator, count: int, length: int, prefix: str = "") -> np.ndarray:
    """`count` distinct-looking random ids of `length` characters (collisions are harmless)."""
    letters = ALPHABET[rng.integers(0, len(ALPHABET), (count, length - len(prefix)))]
    return np.char.add(prefix, letters.view(f"<U{length - len(prefix)}").ravel())


def skewed(rng: np.random.Generator, count: int, size: int, power: float) -> np.ndarray:
    """Indices in [0, size), index k drawn with density ~ k^(1/power - 1): a few heavy ones, a long tail."""
    return np.minimum((size * rng.random(count) ** power).astype(np.int64), size - 1)


def generate(folder: Path, gzip_mb: float, seed: int = 0) -> dict:
    """The review and metadata files (module doc); returns their sizes and counts."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    estimated_reviews = int(gzip_mb * 1e6 / 260)  # about 260 compressed bytes a review (measured on a first batch)
    n_users, n_items = max(estimated_reviews // 3, 10), max(estimated_reviews // 15, 10)
    users, items = tokens(rng, n_users, 28, "A"), tokens(rng, n_items, 10, "B0")
    parents = items[np.minimum(np.arange(n_items) // 2 * 2, n_items - 1)]  # two asins per parent_asin
    words = np.array([("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(2, 10)))))
                      for _ in range(5000)])
    path = folder / f"{STEM}.jsonl.gz"
    reviews = 0
    start = time.perf_counter()
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as stream:
        while raw.tell() < gzip_mb * 1e6:
            user = users[skewed(rng, BATCH, n_users, 2.5)]
            item = skewed(rng, BATCH, n_items, 2.0)
            rating = rng.integers(1, 6, BATCH)
            stamp = 1_400_000_000_000 + rng.integers(0, 300_000_000_000, BATCH)
            lengths = rng.integers(5, 120, BATCH)
            text = words[skewed(rng, int(lengths.sum()), len(words), 3.0)]
            cuts = np.cumsum(lengths)
            lines = []
            for k in range(BATCH):
                body = " ".join(text[cuts[k] - lengths[k]:cuts[k]])
                lines.append(json.dumps({
                    "rating": float(rating[k]), "title": body[:40], "text": body, "images": [],
                    "asin": items[item[k]], "parent_asin": parents[item[k]], "user_id": user[k],
                    "timestamp": int(stamp[k]), "helpful_vote": int(lengths[k] % 7), "verified_purchase": bool(k % 5),
                }))
            stream.write(("\n".join(lines) + "\n").encode())
            reviews += BATCH
    meta_path = folder / f"meta_{STEM}.jsonl.gz"
    with gzip.open(meta_path, "wt", encoding="utf-8") as stream:
        for k, parent in enumerate(np.unique(parents)):
            title = KEYWORD_TITLES[k // 10 % len(KEYWORD_TITLES)] if k % 10 == 0 else f"Pantry item {k}"
            stream.write(json.dumps({"main_category": "Grocery", "title": title, "features": ["tasty"],
                                     "description": ["A product."], "store": "Store", "categories": [],
                                     "details": {"Weight": "1 lb"}, "parent_asin": parent}) + "\n")
    return {"reviews": reviews, "user_pool": n_users, "asin_pool": n_items,
            "review_file_bytes": path.stat().st_size, "metadata_file_bytes": meta_path.stat().st_size,
            "generation_seconds": round(time.perf_counter() - start, 1)}


def prepare(raw: Path, out: Path, code: Path = REPO_ROOT) -> dict:
    """Runs the preparer of the checkout `code` in a child process; its wall time, its own peak
    RSS and summary."""
    command = [sys.executable, "-m", "erase_jax.cli", "data", "prepare", DATASET, "--raw", str(raw), "--out", str(out),
               "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(code), "JAX_PLATFORMS": "cpu"}
    parent_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the child's ru_maxrss starts here (module doc)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        log.seek(0)
        stderr = log.read()
    if child.returncode:
        raise SystemExit(f"prepare failed ({child.returncode}):\n{stderr[-3000:]}")
    stats = json.loads((out / "stats.json").read_text())
    return {"command": " ".join(command[1:]), "code": str(code), "wall_seconds": round(seconds, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "parent_peak_rss_mib": round(parent_peak_kib / 1024, 1),
            "steps": stats["steps"], "summary": stats["summary"],
            "log_tail": stderr.splitlines()[-8:]}


def side_by_side(raw: Path, work: Path, baseline: Path, repeats: int) -> dict:
    """Baseline and this checkout alternately on the same file; per-run records and the ratios
    of the medians (this / baseline)."""
    runs = {"baseline": [], "this": []}
    for _ in range(repeats):
        for label, code in (("baseline", baseline), ("this", REPO_ROOT)):
            runs[label].append(prepare(raw, work / label / DATASET, code))
            print(f"{label}: {runs[label][-1]['wall_seconds']} s, {runs[label][-1]['peak_rss_mib']} MiB", file=sys.stderr)
    same = {r["summary"] for rs in runs.values() for r in rs}
    median = {label: {k: float(np.median([r[k] for r in rs])) for k in ("peak_rss_mib", "wall_seconds")}
              for label, rs in runs.items()}
    return {"runs": runs, "medians": median, "same_summary": len(same) == 1,
            "peak_rss_ratio_this_over_baseline": round(median["this"]["peak_rss_mib"] / median["baseline"]["peak_rss_mib"], 3),
            "wall_ratio_this_over_baseline": round(median["this"]["wall_seconds"] / median["baseline"]["wall_seconds"], 3)}


def _commit(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gzip-mb", type=float, default=1000.0, help="size of the generated review file (MB)")
    parser.add_argument("--work", type=Path, default=Path("/work/tmp-data"), help="scratch folder (outside the repo)")
    parser.add_argument("--out", type=Path, help="the result JSON (required unless --generate-only)")
    parser.add_argument("--keep", action="store_true", help="keep the generated and prepared files")
    parser.add_argument("--reuse", action="store_true", help="reuse a file generated earlier with the same --gzip-mb")
    parser.add_argument("--baseline", type=Path, help="also prepare with this checkout's code, side by side")
    parser.add_argument("--repeats", type=int, default=1, help="--baseline: alternating runs of each")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)  # the generating child
    args = parser.parse_args(argv)
    work = args.work / "prepare_memory"
    generated_record = work / "generated.json"
    if args.generate_only:
        generated = generate(work / "raw", args.gzip_mb)
        generated_record.write_text(json.dumps({"gzip_mb": args.gzip_mb, "generated": generated}))
        return
    if args.out is None:
        parser.error("--out is required")
    reuse = args.reuse and generated_record.is_file() and json.loads(generated_record.read_text())["gzip_mb"] == args.gzip_mb
    if work.exists() and not reuse:
        shutil.rmtree(work)
    load_start = os.getloadavg()
    try:
        if not reuse:  # in a child of its own (module doc)
            subprocess.run([sys.executable, __file__, "--generate-only", "--gzip-mb", str(args.gzip_mb),
                            "--work", str(args.work)], check=True)
        generated = json.loads(generated_record.read_text())["generated"]
        print(f"generated {generated}", file=sys.stderr)
        if args.baseline:
            prepared = side_by_side(work / "raw", work, args.baseline, args.repeats)
        else:
            prepared = prepare(work / "raw", work / DATASET)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    config = {"gzip_mb": args.gzip_mb, "repeats": args.repeats, "baseline": str(args.baseline) if args.baseline else None,
              "baseline_commit": _commit(args.baseline) if args.baseline else None}
    record = {"provenance": provenance(config=config), "load_average_at_start": load_start,
              "load_average_at_end": os.getloadavg(), "generated": generated, "prepare": prepared}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    if args.baseline:
        print(f"peak RSS ratio {prepared['peak_rss_ratio_this_over_baseline']}, wall ratio "
              f"{prepared['wall_ratio_this_over_baseline']}", file=sys.stderr)
    else:
        print(f"{prepared['summary']}; {prepared['wall_seconds']} s, peak RSS {prepared['peak_rss_mib']} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
