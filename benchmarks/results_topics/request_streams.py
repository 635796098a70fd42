"""Request streams: what a whole stream of unlearning requests costs, compilation included, cold
and warm compilation cache, as a multiple of one retrain (`benchmarks/stream_cost.py`)."""

from __future__ import annotations

from pathlib import Path

from results_topics.cells import Section, load_cell, seconds, source, table
from results_topics.read import BENCH, REPO_ROOT, load

TITLE = "Request streams"
POLICIES_FILE = BENCH + "stream_cost_policies_ml-100k_bpr_scif.json"
RANDOM_FILE = BENCH + "random_compile.json"
NBR_POLICIES_FILE = BENCH + "nbr_stream_shapes_tafeng.json"
DIAGNOSTICS = ("cg_iterations", "solver_iterations", "finetune_epochs")


def stream_files() -> list[str]:
    """Every `stream_cost_<data set>[_<model>].json` but the policy comparison."""
    found = sorted(p.name for p in (REPO_ROOT / BENCH).glob("stream_cost_*.json"))  # not random_compile.json
    return [BENCH + name for name in found if BENCH + name != POLICIES_FILE]


def where_work_goes(stream: dict) -> str:
    """The per-request diagnostics that size the work (their means over the stream)."""
    means = stream.get("diagnostics_mean", {})
    shown = [f"{key} {means[key]:.1f}" for key in DIAGNOSTICS if key in means]
    return ", ".join([*shown, f"retain rows {stream.get('retain_rows_mean', 0):.0f}"])


def converged_retrain_seconds(dataset: str, model: str) -> float | None:
    """Training seconds (every epoch + compilation) of the data set's converged `model` as its
    experiment configuration trains it, where a quality run recorded them
    (`quality_<model>_<data set>.json`): what the protocol's matched retrain of that run costs.
    None without such a file."""
    path = f"{BENCH}quality_{model.lower()}_{dataset}.json"
    if not (REPO_ROOT / path).exists():
        return None
    timing = load(path)["timing"]
    return float(sum(timing["train_seconds_per_epoch"])) + float(timing.get("compile_seconds", 0.0))


def stream_rows(path: str) -> list[list[str]]:
    report = load(path)
    dataset = report["provenance"]["config"]["dataset"]
    if report.get("scenario", {}).get("scenario") != "sensitive:Horror":
        dataset += f" ({report['scenario']['scenario']}, fraction {report['scenario']['fraction']})"
    rows = []
    for model, entry in report["results"].items():
        retrain = entry["retrain"]
        converged = converged_retrain_seconds(report["provenance"]["config"]["dataset"], model)
        for s in entry["streams"]:
            if "error" in s:
                rows.append([dataset, model, s["method"], s["phase"], "failed: " + " ".join(s["error"]), *[""] * 13,
                             *source(report["provenance"])])
                continue
            served = f"{s['n_requests']}" + (f" of {s['n_stream_requests']}" if s["extrapolated"] else "")
            mean = s["whole_stream_seconds"] / s["n_stream_requests"]  # the whole (or extrapolated) stream's
            rows.append([
                dataset, model, s["method"], s["compilation_cache"], served, str(s["n_shapes"]),
                seconds(s["aot_seconds"]), seconds(s["stream_compile_seconds"]), str(s["n_compiles"]),
                seconds(s["median_seconds"]),
                seconds(mean), f"{mean / s['median_seconds']:.2f}",
                seconds(s["whole_stream_seconds"]) + (" (extrapolated)" if s["extrapolated"] else ""),
                seconds(retrain["retrain_seconds"]), f"{s['stream_over_retrain']:.2f}",
                "" if converged is None else f"{s['whole_stream_seconds'] / converged:.3f}", where_work_goes(s),
                load_cell(*s["load_average"]), *source(report["provenance"]),
            ])
    return rows


def current_rows(files: list[str]) -> list[list[str]]:
    """Every file's rows, a (data set, model, method, cache) measured in several files only from
    the newest (provenance date): a rerun after a change to one method supersedes its rows."""
    pairs = [(load(path)["provenance"]["date"], index, row) for index, path in enumerate(files) for row in stream_rows(path)]
    newest = {}
    for date, index, row in sorted(pairs, key=lambda pair: pair[0]):
        newest[tuple(row[:4])] = (date, index)
    return [row for date, index, row in pairs if newest[tuple(row[:4])] == (date, index)]


def stream_cost() -> Section:
    files = stream_files()
    rows = current_rows(files)
    cold = [row for row in rows if row[3] == "cold"]
    answer_parts = []
    for dataset, model in dict.fromkeys((row[0], row[1]) for row in cold):
        mine = [row for row in cold if row[:2] == [dataset, model]]
        ratios = [float(row[14]) for row in mine]
        within = sum(float(row[11]) <= 2 for row in mine)
        warm = [float(row[14]) for row in rows if row[:2] == [dataset, model] and row[3] != "cold"]
        warm_part = f" ({min(warm):.2f}-{max(warm):.2f} with a warm cache)" if warm else ""
        converged = [float(row[15]) for row in mine if row[15]]
        converged_part = (f", {min(converged):.3f}-{max(converged):.3f} of a converged retrain" if converged else "")
        answer_parts.append(f"{model} {dataset} (cold cache) {min(ratios):.2f}-{max(ratios):.2f} retrains per stream"
                            f"{warm_part}{converged_part}, mean <= 2x median in {within} of {len(mine)}")
    header = ["data set", "model", "method", "cache", "requests", "shapes", "AOT s", "compile s", "XLA programs", "median s",
              "mean s (compile incl.)", "mean / median", "stream s", "one retrain s", "stream / retrain",
              "stream / converged retrain", "per-request work (means)", "load", "config", "command", "commit", "machine"]
    return Section(
        "What does a whole request stream cost, compilation included, as a multiple of one retrain?",
        "; ".join(answer_parts) or "not measured", [
            "The sensitive Horror scenario (rating >= 3.5, fraction 0.003; data without item categories, ML-1M's RecEraser "
            "split: random users, fraction 0.003), every approximate method, the default padding "
            "policy (every request padded to the stream's largest buckets: one compiled shape, compiled before the first "
            "request). Each stream runs in a fresh process with JAX's persistent compilation cache in its own folder: "
            "`cold` starts it empty, `warm` reuses what the cold run wrote (`partial`: some programs were not in it, those "
            "under the cache's 0.5 s threshold). AOT s: planning and compiling ahead of time (one execution per shape "
            "included); compile s: trace, lowering and XLA compile seconds in the whole stream (jax.monitoring), of which "
            "none inside requests when AOT covered every shape; XLA programs: executables built or loaded in the stream; "
            "mean s = stream s / requests. One retrain: the trained run's "
            "own epochs and compilation (evaluation excluded), the retrain the protocol matches; a large data set's model "
            "trains only a few epochs here (`--epochs`), so the converged retrain is also shown where a quality run of "
            "the data set's experiment configuration recorded its training seconds (`quality_<model>_<data set>.json`; "
            "another run, at another time and load: a ratio of magnitude, not a side-by-side one). Large data sets serve "
            "only the first requests and extrapolate the stream (AOT + mean request seconds x the stream's requests). The "
            "machine's two cores were shared with other jobs (load column).",
            "",
            *table(header, rows),
            "",
            "Files: " + ", ".join(f"`{p}`" for p in files) + ".",
        ])


def padding_policies() -> Section:
    report = load(POLICIES_FILE)
    streams = report["results"]["BPR"]["streams"]
    rows = [[s["policy"], s["phase"], s["compilation_cache"], str(s["n_shapes"]), str(s["n_compiles"]),
             seconds(s["stream_compile_seconds"]), seconds(s["median_seconds"]), seconds(s["mean_seconds"]),
             f"{s['mean_over_median']:.2f}", seconds(s["whole_stream_seconds"]), f"{s['stream_over_retrain']:.2f}",
             load_cell(*s["load_average"]), *source(report["provenance"])] for s in streams]
    by = {(s["policy"], s["phase"]): s for s in streams}
    cold = "stream", "cold"
    answer = (f"one shape per stream: {by[cold]['whole_stream_seconds']:.0f} s cold vs "
              f"{by[('buckets', 'cold')]['whole_stream_seconds']:.0f} s with a shape per bucket pair "
              f"({by[('buckets', 'cold')]['n_shapes']} shapes)") if cold in by and ("buckets", "cold") in by else "not measured"
    return Section(
        "Padding: one shape per stream or one per bucket (SCIF, BPR, ML-100K Horror)?", answer, [
            "The same stream with the two padding policies (`UnlearnConfig.request_shapes`): `stream` pads every request to "
            "the stream's largest buckets (more rows per request, one compilation), `buckets` pads each request to its own "
            "power-of-two buckets (one compilation per bucket pair). Both compile every shape before the first request.",
            "",
            *table(["policy", "phase", "cache", "shapes", "XLA programs", "compile s", "median s", "mean s", "mean / median",
                    "stream s", "stream / retrain", "load", "config", "command", "commit", "machine"], rows),
            "",
            f"Files: `{POLICIES_FILE}`.",
        ])


def random_compile() -> Section:
    report = load(RANDOM_FILE)
    by = {}
    for r in report["results"]:
        by.setdefault((r["program"], r["lowering"], r.get("key_impl", "threefry2x32 (raw key)")), []).append(r)
    rows = [[program, lowering, impl, str(len(runs)), " / ".join(seconds(r["compile_seconds"]) for r in runs),
             " / ".join(f"{r['run_seconds'] * 1e3:.2f}" for r in runs), load_cell(report["load_average_start"],
                                                                                  report["load_average_end"]),
             *source(report["provenance"])] for (program, lowering, impl), runs in by.items()]
    mean = {key[:2] if "raw" in key[2] else key: sum(r["compile_seconds"] for r in runs) / len(runs)
            for key, runs in by.items()}
    answer = (f"an add compiles in {mean[('add', 'rolled')]:.2f} s, one randint in {mean[('randint', 'rolled')]:.1f} s, "
              f"the CF negative draw in {mean[('negatives', 'rolled')]:.1f} s (JAX's CPU lowering; "
              f"{mean[('randint', 'unrolled')]:.1f} s / {mean[('negatives', 'unrolled')]:.1f} s unrolled, the same bits: "
              f"{report['same_bits']})")
    impls = [key for key in mean if len(key) == 3 and key[0] == "shuffle"]
    if impls:
        answer += "; a shuffle compiles in " + ", ".join(f"{mean[key]:.1f} s ({key[2]})" for key in impls)
    return Section("What does one random-draw site cost to compile on CPU?", answer, [
        f"Programs over {report['rows']} rows compiled in one process, alternating JAX's CPU lowering of threefry2x32 "
        "(rolled rounds, the default) and the unrolled one (other platforms' default, switched through a private hook), "
        "then, with the default lowering, JAX's public key implementations (`jax.random.key(seed, impl=...)`). A request "
        "program pays this for each of its random draws (shuffles, fresh values, sampled negatives, key splits); "
        "Kookmin's single request program held nine, before its draws moved to the host.",
        "", *table(["program", "lowering", "key implementation", "repeats", "compile s", "run ms", "load", "config",
                    "command", "commit", "machine"], rows), "", f"Files: `{RANDOM_FILE}`."])


def before_after() -> Section:
    files = ab_files()
    rows, parts = [], []
    for path in files:
        report = load(path)
        method = report["provenance"]["config"]["method"]
        run = Path(report["provenance"]["config"]["run_dir"]).name  # e.g. BPR_ml-100k
        for s in report["streams"]:
            if "error" in s:
                continue
            commit = report["before_commit"] if s["side"] == "before" else report["provenance"]["commit"]
            rows.append([method, run, f"{s['side']} ({commit})", str(s["repeat"]), str(s["n_compiles"]),
                         seconds(s["aot_seconds"]), seconds(s["stream_compile_seconds"]), seconds(s["median_seconds"]),
                         seconds(s["method_median_seconds"]), seconds(s["mean_seconds"]), f"{s['mean_over_median']:.2f}",
                         seconds(s["total_seconds"]), load_cell(*s["load_average"]), *source(report["provenance"])])
        medians = report.get("medians")
        if medians:
            b, a = medians["before"], medians["after"]
            label = report["provenance"]["config"].get("label") or method
            parts.append(f"{label}: AOT {b['aot_seconds']:.1f} -> {a['aot_seconds']:.1f} s, median request "
                         f"{b['median_seconds'] * 1e3:.0f} -> {a['median_seconds'] * 1e3:.0f} ms, mean / median "
                         f"{b['mean_over_median']:.2f} -> {a['mean_over_median']:.2f}")
    return Section(
        "What did a change to a method's request program do to its stream (before and after, alternated)?",
        "; ".join(parts) or "not measured", [
            "One trained run's stream (ML-100K, sensitive Horror, 98 requests), served alternately by the earlier "
            "commit and the changed tree, each in a fresh process with an empty compilation cache (`benchmarks/stream_ab.py`). "
            "Kookmin's changes: first (`stream_ab_ml-100k_bpr_kookmin.json`) one small jitted step per loader batch from a "
            "host loop, its shuffles and re-initialisation in numpy, instead of one request program; then "
            "(`stream_ab_ml-100k_bpr_kookmin_phases.json`, `stream_ab_ml-100k_lightgcn_kookmin_phases.json`) each phase (the score's F pass, its C and R pass, each "
            "fine-tuning epoch) as one call of a compiled loop over the phase's batches, gathered on device.",
            "",
            *table(["method", "trained run", "code", "repeat", "XLA programs", "AOT s", "compile s", "median s", "method median s",
                    "mean s (compile incl.)", "mean / median", "requests s", "load", "config", "command", "commit",
                    "machine"], rows),
            "",
            "Files: " + ", ".join(f"`{p}`" for p in files) + ".",
        ])


def ab_files() -> list[str]:
    return [BENCH + p.name for p in sorted((REPO_ROOT / BENCH).glob("stream_ab_*.json"))]


def nbr_padding_policies() -> Section:
    report = load(NBR_POLICIES_FILE)
    streams = [s for s in report["streams"] if "error" not in s]
    rows = [[s["method"], s["policy"], s["compilation_cache"], f"{s['n_requests']} of {s['n_stream_requests']}",
             f"{len(s['served_shapes'])} ({s['n_shapes_whole_stream']})", str(s["aot_n_compiles"]), seconds(s["aot_seconds"]),
             str(s["n_compiles_in_requests"]), " / ".join(f"{x:.1f}" for x in s["seconds"]), seconds(s["served_seconds"]),
             load_cell(*s["load_average"]), *source(report["provenance"])] for s in streams]
    by = {(s["method"], s["policy"]): s for s in streams}
    parts = [f"{m}, first {by[(m, 'stream')]['n_requests']} requests: {by[(m, 'buckets')]['served_seconds']:.0f} s with a "
             f"shape per width ({len(by[(m, 'buckets')]['served_shapes'])} shapes) vs "
             f"{by[(m, 'stream')]['served_seconds']:.0f} s with one"
             for m in dict.fromkeys(s["method"] for s in streams) if (m, "buckets") in by and (m, "stream") in by]
    return Section(
        "Padding next-basket requests: one shape per stream or one per (rows, width) bucket (DNNTSP, Ta-Feng)?",
        "; ".join(parts) or "not measured side by side yet", [
            "The random-users stream (fraction 0.003) of the Ta-Feng DNNTSP run, its first requests served by a fresh "
            "process per (method, policy) with an empty persistent compilation cache (cold), the shapes of the served "
            "requests compiled ahead of time. `buckets`: each request's batches at their own power-of-two rows and widest "
            "history; `stream`: every request at the stream's rows and widest history (rows chunked by history length "
            "inside the model, `models/nbr/row_chunks.py`). Shapes: distinct shapes among the served requests (in the whole "
            "stream, all compiled ahead of time by the `unlearn` job). Served s: planning, ahead-of-time compilation and "
            "the requests.",
            "",
            *table(["method", "policy", "cache", "requests", "shapes", "XLA programs ahead", "AOT s", "compiles in requests",
                    "request s", "served s", "load", "config", "command", "commit", "machine"], rows),
            "",
            f"Files: `{NBR_POLICIES_FILE}`.",
        ])


PHASES_FILE = BENCH + "nbr_method_run_phases_tafeng.json"
PHASES = ("load", "plan", "compile", "requests", "checkpointing", "trained", "evaluation", "writing")


def phase_seconds(run: dict, name: str) -> float:
    """A phase's seconds; "evaluation" adds up the method's checkpoints k = 0..3."""
    if name == "evaluation":
        return sum(v["seconds"] for k, v in run["phases"].items() if k.startswith("evaluation_k"))
    return run["phases"].get(name, {}).get("seconds", 0.0)


def nbr_method_run_phases() -> Section:
    report = load(PHASES_FILE)
    runs = [r for r in report["runs"] if "error" not in r]
    rows = []
    for r in runs:
        programs = sum(v.get("n_compiles", 0) for v in r["phases"].values())
        rows.append([r["method"], r["tree"], seconds(r["total_seconds"]), *(seconds(phase_seconds(r, p)) for p in PHASES),
                     str(programs), load_cell(*r["load_average"]), *source(report["provenance"])])
    trees = list(dict.fromkeys(r["tree"] for r in runs))
    parts = []
    for method in dict.fromkeys(r["method"] for r in runs):
        by = {r["tree"]: r for r in runs if r["method"] == method}
        if len(trees) == 2 and all(t in by for t in trees):
            before, after = (by[t]["total_seconds"] for t in trees)
            parts.append(f"{method} {before:.0f} -> {after:.0f} s ({before / after:.1f}x)")
    same = [f"{c['method']}: {c['max_abs_difference']:.2g}" for c in report.get("rows", []) if "max_abs_difference" in c]
    answer = "; ".join(parts) or "not measured side by side yet"
    data = report["provenance"]["config"]
    return Section(
        "Where do the seconds of one next-basket method run go (DNNTSP, Ta-Feng), before and after?", answer, [
            f"One `erase-jax unlearn` per method and code tree (`{' / '.join(trees)}`, alternating method by method, each "
            f"in a fresh process with the persistent compilation cache off, so every compilation is cold), the methods one "
            f"after the other in one scenario folder per tree; run `{data['run']}`, scenario {data['scenario']} "
            f"(fraction {data['fraction']}); {report.get('setting', 'the run as trained')}. Phases (`benchmarks/nbr_method_run_phases.py`): loading the run and protocol, "
            "planning and compiling the request shapes, the requests, per-request state checkpoints, the trained model's "
            "rows, the method's model at the four checkpoints (evaluation), and the result files. XLA programs: "
            "executables built in the run. The rows of `unlearning.csv` of the two trees, largest absolute difference "
            "over the measured columns: " + ("; ".join(same) or "not compared") + ".",
            "",
            *table(["method", "code", "total s", *(f"{p} s" for p in PHASES), "XLA programs", "load", "config", "command",
                    "commit", "machine"], rows),
            "",
            f"Files: `{PHASES_FILE}`.",
        ])


def _present(path: str) -> bool:
    return Path(REPO_ROOT / path).exists()


SECTIONS = tuple(s for s, present in ((stream_cost, True), (before_after, bool(ab_files())),
                                      (padding_policies, _present(POLICIES_FILE)), (random_compile, _present(RANDOM_FILE)),
                                      (nbr_padding_policies, _present(NBR_POLICIES_FILE)),
                                      (nbr_method_run_phases, _present(PHASES_FILE))) if present)
