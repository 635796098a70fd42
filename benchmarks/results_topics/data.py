"""Data preparation: how much memory and time `erase-jax data prepare` needs on a raw file of
realistic size, this code beside the code before the resumable steps (`benchmarks/prepare_memory.py
--baseline`)."""

from __future__ import annotations

from results_topics.cells import PROVENANCE_COLUMNS, Section, code, files_line, load_cell, seconds, source, table
from results_topics.read import BENCH, load

TITLE = "Data preparation"
FILES = (BENCH + "prepare_memory_amazon_grocery_200mb.json", BENCH + "prepare_memory_amazon_grocery.json")


def prepare_memory() -> Section:
    rows, peaks, reviews = [], [], []
    for path in FILES:
        report = load(path)
        generated, prepared = report["generated"], report["prepare"]
        this, baseline = prepared["medians"]["this"], prepared["medians"]["baseline"]
        last = prepared["runs"]["this"][-1]["steps"][-1]
        peaks.append(this["peak_rss_mib"] / 1024)
        reviews.append(generated["reviews"])
        rows.append([
            f"{generated['review_file_bytes'] / 1e9:.2f} GB gzip JSONL", f"{generated['reviews']:,}",
            f"{last['interactions']:,} ({last['users']:,} users, {last['items']:,} items)",
            f"{baseline['peak_rss_mib'] / 1024:.2f}", f"{this['peak_rss_mib'] / 1024:.2f}",
            f"{prepared['peak_rss_ratio_this_over_baseline']:.3f}",
            seconds(baseline["wall_seconds"]), seconds(this["wall_seconds"]),
            f"{prepared['wall_ratio_this_over_baseline']:.2f}", str(len(prepared["runs"]["this"])),
            "yes" if prepared["same_summary"] else "NO",
            load_cell(report["load_average_at_start"], report["load_average_at_end"]),
            *source(report["provenance"]),
        ])
    per_million = (peaks[1] - peaks[0]) * 1024 / ((reviews[1] - reviews[0]) / 1e6)
    baseline_commit = load(FILES[1])["provenance"]["config"].get("baseline_commit", "unknown")
    return Section(
        "How much memory and time does `data prepare` take on a raw file of realistic size?",
        f"peak resident memory {peaks[1]:.2f} GiB on a 1 GB gzip review file (Amazon Reviews 2023 format), growing by "
        f"about {per_million:.0f} MiB per million reviews", [
            "A review file in the Amazon Reviews 2023 format (every field of a real record, text of random words, "
            "skewed users and items) generated to the size on disk, with a metadata file of one record per "
            "parent_asin, prepared as `amazon_reviews_grocery_and_gourmet_food` (streamed read, exact de-duplication, "
            "5-core, keyword rules) in a child process: its wall time and its own peak resident memory (`ru_maxrss` "
            "from `os.wait4`; the file is generated in another process, so the child does not start at the "
            f"generator's size). Each size is prepared by the code before the resumable steps (commit "
            f"{code(baseline_commit)}, `before`) and by this code (`after`), alternately on the same file; medians "
            "of the runs. The machine's two cores were shared with other jobs (load column: 1-minute load average "
            "at start and end), so the times and their ratio are noisy; the memory does not depend on the load. "
            f"Memory grows with the rows and distinct ids kept, not with the text: about {per_million:.0f} MiB per "
            "million reviews between the two sizes, on top of what the process holds after its imports.",
            "",
            *table(["review file", "reviews read", "rows kept (5-core)", "peak RSS GiB before", "after",
                    "after / before", "seconds before", "after", "after / before", "runs each", "same output",
                    "load", *PROVENANCE_COLUMNS], rows),
            "",
            files_line(*FILES),
        ])


SECTIONS = (prepare_memory,)
