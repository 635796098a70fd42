"""Data preparation: how much memory and time `erase-jax data prepare` needs on a raw file of
realistic size (`benchmarks/prepare_memory.py`)."""

from __future__ import annotations

from results_topics.cells import PROVENANCE_COLUMNS, Section, files_line, load_cell, seconds, source, table
from results_topics.read import BENCH, load

TITLE = "Data preparation"
FILES = (BENCH + "prepare_memory_amazon_grocery_250mb.json", BENCH + "prepare_memory_amazon_grocery.json")


def prepare_memory() -> Section:
    rows = []
    for path in FILES:
        report = load(path)
        generated, prepared = report["generated"], report["prepare"]
        last = prepared["steps"][-1]
        rows.append([
            f"{generated['review_file_bytes'] / 1e9:.2f} GB gzip JSONL", f"{generated['reviews']:,}",
            f"{last['interactions']:,} ({last['users']:,} users, {last['items']:,} items)",
            seconds(prepared["wall_seconds"]), f"{prepared['peak_rss_mib'] / 1024:.2f}",
            load_cell(report["load_average_at_start"], report["load_average_at_end"]),
            *source(report["provenance"]),
        ])
    (small, large), (n_small, n_large) = (float(r[4]) for r in rows), (load(f)["generated"]["reviews"] for f in FILES)
    per_million = (large - small) * 1024 / ((n_large - n_small) / 1e6)
    return Section(
        "How much memory and time does `data prepare` take on a raw file of realistic size?",
        f"peak resident memory {large:.2f} GiB on a 1 GB gzip review file (Amazon Reviews 2023 format), growing by "
        f"about {per_million:.0f} MiB per million reviews", [
            "A review file in the Amazon Reviews 2023 format (every field of a real record, text of random words, "
            "skewed users and items) generated to the size on disk, with a metadata file of one record per "
            "parent_asin, prepared as `amazon_reviews_grocery_and_gourmet_food` (streamed read, exact de-duplication, "
            "5-core, keyword rules) in a child process: its wall time and peak resident memory (`ru_maxrss`). "
            "The machine's two cores were shared with other jobs (load column: 1-minute load average at start and "
            "end), so the time is an upper bound; the memory does not depend on the load. Memory grows with the rows "
            f"and distinct ids kept, not with the text: about {per_million:.0f} MiB per million reviews between the two "
            "sizes (the increase of the peak over the increase of the reviews), on top of what the process holds "
            "before reading.",
            "",
            *table(["review file", "reviews read", "rows kept (5-core)", "seconds", "peak RSS GiB", "load",
                    *PROVENANCE_COLUMNS], rows),
            "",
            files_line(*FILES),
        ])


SECTIONS = (prepare_memory,)
