"""The `erase-jax` command line: train, evaluate, unlearn, retrain, report, demo, data."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML configuration file (unknown keys are rejected)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set model=LightGCN --set dataset=ml-100k --set train.epochs=20",
    )
    parser.add_argument("--data-root", help="folder holding data sets by name (default: $ERASE_JAX_DATA, else ../shared/data)")


def _config(args):
    from erase_jax.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "data_root", None):
        overrides.append(f"data.data_root={args.data_root}")
    return load_config(args.config, overrides)


def _default_out(config) -> Path:
    dataset = Path(config.data.dataset).name
    return Path("runs") / f"{config.model}_{dataset}_seed{config.seed}"


def cmd_train(args) -> int:
    from erase_jax.run import train_run

    config = _config(args)
    out = Path(args.out) if args.out else _default_out(config)
    result = train_run(config, out, overwrite=args.overwrite, quiet=args.quiet)
    print(json.dumps({"run": str(out), "epochs": result["epochs"], "test": result["test"]}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from erase_jax.run import evaluate_run

    print(json.dumps(evaluate_run(args.run), indent=2))
    return 0


def _parse_scenario(text: str) -> dict:
    """`sensitive:<category>`, `spam`, `random` or `random:<users|interactions>`."""
    name, _, detail = text.partition(":")
    if name == "sensitive":
        if not detail:
            raise ValueError("--scenario sensitive needs a category: sensitive:<category>, e.g. sensitive:Horror")
        return {"scenario": "sensitive", "category": detail}
    if name == "spam":
        return {"scenario": "spam"}
    if name == "random":
        return {"scenario": "random", **({"random_unit": detail} if detail else {})}
    raise ValueError(f"unknown scenario {text!r}: use sensitive:<category>, spam or random[:users|interactions]")


def _unlearn_config(args, method: str):
    from erase_jax.config import apply_overrides, from_dict
    from erase_jax.unlearn.protocol.run import UnlearnConfig

    values = {"method": method, **_parse_scenario(args.scenario)}
    for name in ("fraction", "forget_file", "max_hours", "seed", "request_shapes"):
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if args.rating_threshold is not None:
        values["forget_rating_threshold"] = args.rating_threshold
    if getattr(args, "batch_size", None):
        values["unlearning_batchsize"] = args.batch_size
    if args.evaluators:
        values["evaluators"] = [name.strip() for name in args.evaluators.split(",") if name.strip()]
    values = apply_overrides(values, [f"method_options.{o}" for o in getattr(args, "options", [])])
    return from_dict(UnlearnConfig, values)


def _add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    from erase_jax.evaluators.base import DEFAULT_EVALUATORS, EVALUATORS

    parser.add_argument("--run", required=True, help="trained run folder (erase-jax train --out ...)")
    parser.add_argument("--scenario", required=True, help="sensitive:<category> | spam | random[:users|interactions]")
    parser.add_argument("--fraction", type=float, help="share of all interactions to forget (sensitive, random)")
    parser.add_argument("--forget-rating-threshold", "--rating-threshold", dest="rating_threshold", type=float, metavar="RATING",
                        help="sensitive: forget only interactions rated >= this (UnlearnConfig.forget_rating_threshold)")
    parser.add_argument("--forget-file", help="a forget file in the original's format instead of generating one")
    parser.add_argument("--seed", type=int, help="forget-set seed (default: the trained run's seed)")
    parser.add_argument("--out", help="scenario folder (default <run>/unlearn/<scenario>)")
    parser.add_argument("--evaluators", help=f"comma-separated evaluators run at each checkpoint, in column order, "
                        f"from {EVALUATORS.names()} (default: {','.join(DEFAULT_EVALUATORS)})")


def _print_rows(rows: list[dict]) -> None:
    columns = ["method", "checkpoint_idx", "eval_type", "test_recall@20", "test_ndcg@20",
               "pct_users_with_sensitive@20", "users_with_target@20", "forgotten_hit@20", "request_seconds_median"]
    present = [c for c in columns if any(c in row for row in rows)]
    print("  ".join(f"{c:>14}" for c in present))
    for row in rows:
        cells = []
        for c in present:
            value = row.get(c, "")
            cells.append(f"{value:>14.4f}" if isinstance(value, float) else f"{str(value):>14}")
        print("  ".join(cells))


def cmd_unlearn(args) -> int:
    from erase_jax.unlearn.protocol.jobs import unlearn

    config = _unlearn_config(args, args.method)
    _print_rows(unlearn(args.run, config, args.out, eval_only=args.eval_only, quiet=args.quiet))
    return 0


def cmd_retrain(args) -> int:
    from erase_jax.unlearn.protocol.jobs import CHECKPOINTS, retrain_all

    config = _unlearn_config(args, "retrain")
    checkpoints = CHECKPOINTS if args.checkpoint_idx == "all" else (int(args.checkpoint_idx),)
    _print_rows(retrain_all(args.run, config, checkpoints, args.out, quiet=args.quiet, seeds=args.seeds, budget=args.budget))
    return 0


def cmd_audit(args) -> int:
    from erase_jax.audit.job import audit, config_from_arguments

    config = config_from_arguments(args)  # the audit's own errors first
    path = audit(args.run, _unlearn_config(args, "untouched"), config, args.out, args.replace, args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from erase_jax.unlearn.protocol.report import write_report

    written = write_report(args.scenario_dir, args.checkpoint, args.out)
    for path in written:
        print(f"wrote {path}")
    if len(written) == 1:
        print("no figure: matplotlib is not installed (pip install -e '.[plot]')")
    return 0


def cmd_data_prepare(args) -> int:
    from erase_jax.data.prepare import prepare_dataset

    record = prepare_dataset(args.name, args.raw, args.out, args.options, overwrite=args.overwrite, quiet=args.quiet,
                             download=args.download, checksums=args.checksums, mirror=args.mirror)
    if args.quiet:
        print(record["summary"])
    return 0


def cmd_data_forget_set(args) -> int:
    from erase_jax.data.prepare import write_forget_sets

    scenario = _parse_scenario(args.scenario)
    threshold = {} if args.rating_threshold is None else {
        "rating_threshold": None if args.rating_threshold.lower() == "none" else float(args.rating_threshold)}
    paths = write_forget_sets(args.prepared, scenario["scenario"], args.fraction, args.seed,
                              category=scenario.get("category"), random_unit=scenario.get("random_unit", "users"),
                              rule=args.rule, out=args.out, quiet=args.quiet, **threshold)
    if args.quiet:
        print("\n".join(str(p) for p in paths))
    return 0


def cmd_data_list(args) -> int:
    from erase_jax.data.prepare import PREPARERS

    for cls in PREPARERS.classes():
        print(f"{cls.name} ({cls.task}): {cls.raw_files}\n    from {cls.source}")
        for file_name, url in getattr(cls, "downloads", {}).items():
            print(f"    --download: {file_name} <- {url}")
    return 0


def _add_data_commands(sub, common) -> None:
    data = sub.add_parser("data", help="the benchmark's data sets from their public raw files; forget files")
    commands = data.add_subparsers(dest="data_command", required=True)
    prepare = commands.add_parser("prepare", parents=[common], help="raw files -> the benchmark's files, stats.json")
    prepare.add_argument("name", help="data set (erase-jax data list), e.g. movielens")
    prepare.add_argument("--raw", required=True, help="folder holding the downloaded raw files")
    prepare.add_argument("--out", help="output folder, whose name is the data set's (default data/<name>)")
    prepare.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                         help="a preparer setting, e.g. --option k_core=10 --option categories=[health]")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    prepare.add_argument("--download", action="store_true",
                         help="first download the raw files missing from --raw (data sets with public URLs)")
    prepare.add_argument("--checksums", metavar="FILE",
                         help="--download: SHA-256 sums, lines '<sha256>  <file name>' (required: none is recorded)")
    prepare.add_argument("--mirror", metavar="URL", help="--download: fetch each file from URL/<file name> instead")
    prepare.set_defaults(func=cmd_data_prepare)
    forget = commands.add_parser("forget-set", parents=[common], help="the original's forget files from a prepared folder")
    forget.add_argument("prepared", help="a folder written by `erase-jax data prepare`")
    forget.add_argument("--scenario", required=True, help="sensitive:<category> | random[:users|interactions]")
    forget.add_argument("--fraction", type=float, nargs="+", required=True, help="share(s) of all interactions")
    forget.add_argument("--seed", type=int, nargs="+", default=[2, 3, 5, 7, 11], help="seed(s) (default: the original's five)")
    forget.add_argument("--rating-threshold", help="forget only rows rated >= this; 'none' for all (default: the data set's)")
    forget.add_argument("--rule", choices=["fit", "reach"], help="stopping rule (default: the data set's, spec 3.2.2)")
    forget.add_argument("--out", help="folder for the files (default: the prepared folder)")
    forget.set_defaults(func=cmd_data_forget_set)
    listing = commands.add_parser("list", help="the data sets that can be prepared, with their raw files")
    listing.set_defaults(func=cmd_data_list, quiet=False)


def cmd_grid(args) -> int:
    from erase_jax.grid.command import run_grid

    return run_grid(args.grid, args.out, args.workers, args.executor, args.dry_run, args.quiet, args.address, args.archive)


def cmd_demo(args) -> int:
    """The main job on the embedded synthetic data: train, unlearn a category, retrain, compare."""
    from erase_jax.config import load_config
    from erase_jax.run import train_run
    from erase_jax.unlearn import method_names
    from erase_jax.unlearn.protocol.jobs import CHECKPOINTS, retrain_all, unlearn
    from erase_jax.unlearn.protocol.run import UnlearnConfig

    out = Path(args.out)
    config = load_config(None, ["model=BPR", "dataset=synthetic", f"seed={args.seed}"])
    result = train_run(config, out / "bpr", overwrite=True, quiet=args.quiet)
    print(f"trained BPR on synthetic data: {result['epochs']} epochs, test recall@20 {result['test']['recall@20']:.4f}")

    method = args.method or ("scif" if "scif" in method_names() else "untouched")
    scenario = UnlearnConfig(method=method, scenario="sensitive", category="Horror", fraction=args.fraction)
    scenario_dir = out / "bpr" / "unlearn" / scenario.tag()
    retrain_all(out / "bpr", scenario, CHECKPOINTS, str(scenario_dir), quiet=args.quiet)
    unlearn(out / "bpr", scenario, str(scenario_dir), quiet=args.quiet)  # also evaluates the trained model

    import csv

    with (scenario_dir / "unlearning.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["checkpoint_idx"] == "3"]
    columns = [("eval_type", "model"), ("method", "method"), ("test_recall@20", "recall@20"),
               ("avg_sensitive_per_user@20", "Horror in top-20"), ("forgotten_hit@20", "forgotten in top-20"),
               ("agree_unlearned_jaccard@20", "Jaccard@20 vs retrain"), ("request_seconds_median", "s/request")]
    print(f"\nUnlearning 'Horror' (checkpoint 3 = all {rows[0]['n_unlearned_users']} requests, "
          f"{rows[0]['n_removed']} interactions):")
    print("".join(f"{title:>22}" for _, title in columns))
    for row in rows:
        print("".join(f"{_cell(row.get(key, '')):>22}" for key, _ in columns))
    from erase_jax.unlearn.protocol.report import write_report

    report = write_report(scenario_dir)
    print(f"\nall rows: {scenario_dir / 'unlearning.csv'}; side by side: {', '.join(map(str, report))}")
    return 0


def _cell(value: str) -> str:
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return value


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so repeated runs skip recompiling the same shapes.

    Location: $ERASE_JAX_COMPILATION_CACHE (set it to "off" to disable), else
    ~/.cache/erase-jax/jax. Only compilations slower than 0.5 s are stored.
    """
    location = os.environ.get("ERASE_JAX_COMPILATION_CACHE", str(Path.home() / ".cache" / "erase-jax" / "jax"))
    if location == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", location)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="erase-jax", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train a model and evaluate it (resumes an interrupted run)")
    _add_config_arguments(train)
    train.add_argument("--out", help="run folder (default runs/<model>_<dataset>_seed<seed>)")
    train.add_argument("--overwrite", action="store_true",
                       help="discard an existing run in --out and everything derived from it there (unlearn/)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common], help="re-evaluate a saved run on its valid and test splits")
    evaluate.add_argument("run", help="run folder written by `erase-jax train`")
    evaluate.set_defaults(func=cmd_evaluate)

    from erase_jax.unlearn import method_names
    from erase_jax.unlearn.methods.base import METHODS

    unlearn = sub.add_parser("unlearn", parents=[common], help="apply an unlearning method request by request")
    _add_scenario_arguments(unlearn)
    unlearn.add_argument("--method", required=True, choices=[*method_names(), *METHODS.aliases(), "retrain"],
                         help="a method (`original` is the old name of `untouched`), or retrain")
    unlearn.add_argument("--unlearning-batchsize", "--batch-size", dest="batch_size", type=int, metavar="N",
                         help="users per request (UnlearnConfig.unlearning_batchsize, default 1)")
    unlearn.add_argument("--max-hours", type=float, help="total time budget, split evenly over the requests")
    unlearn.add_argument("--request-shapes", choices=["stream", "buckets"],
                         help="padding of the requests, all compiled before the first: stream (default: every request "
                              "to the stream's largest buckets, one shape) or buckets (each to its own power-of-two buckets)")
    unlearn.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                         help="a method hyperparameter, e.g. --option damping=0.01")
    unlearn.add_argument("--eval-only", action="store_true", help="re-evaluate saved checkpoints (e.g. once retrains exist)")
    unlearn.set_defaults(func=cmd_unlearn)

    retrain = sub.add_parser("retrain", parents=[common], help="train from scratch without the forgotten data")
    _add_scenario_arguments(retrain)
    retrain.add_argument("--checkpoint-idx", default="all", choices=["0", "1", "2", "3", "all"])
    retrain.add_argument("--seeds", type=int, nargs="*", default=[],
                         help="also retrain with these seeds (rows retrain@seed<s>): the report's noise floor")
    retrain.add_argument("--budget", default="trained", choices=["trained", "original", "early_stopping"],
                         help="trained: the trained run's epochs, no early stopping (default; \"original\" is its old name); early_stopping: the run's rule")
    retrain.set_defaults(func=cmd_retrain)

    from erase_jax.audit.job import add_arguments as add_audit_arguments

    audit = sub.add_parser("audit", parents=[common], help="per-pair membership audit of a scenario's removals with "
                           "shadow models (BPR, LightGCN): audit/audit.json, shown by report")
    _add_scenario_arguments(audit)
    add_audit_arguments(audit)
    audit.set_defaults(func=cmd_audit)

    report = sub.add_parser("report", parents=[common], help="one scenario's methods side by side (report.md, report.png)")
    report.add_argument("scenario_dir", help="a scenario folder: RUN/unlearn/<scenario> (holds unlearning.csv)")
    report.add_argument("--checkpoint", type=int, choices=[0, 1, 2, 3], help="checkpoint of the main table (default: the last)")
    report.add_argument("--out", help="folder for report.md / report.png (default: the scenario folder)")
    report.set_defaults(func=cmd_report)

    grid = sub.add_parser("grid", parents=[common], help="a grid of data sets x models x scenarios x methods x seeds, "
                          "with the retrains, into one leaderboard (resumes; shares finished tasks)")
    grid.add_argument("grid", help="grid file, e.g. experiments/grids/smoke.yaml (unknown keys are rejected)")
    grid.add_argument("--out", default="runs/grids", help="output folder: store/ (shared by grids) and <grid name>/")
    grid.add_argument("--workers", type=int, default=1, help="tasks at a time (default 1)")
    grid.add_argument("--executor", default="local",
                      help="where tasks run: local (worker processes, default) or ray (Ray tasks; pip install -e '.[ray]')")
    grid.add_argument("--address", default=None,
                      help="--executor ray: join this Ray cluster (auto: the one on this machine) instead of starting one")
    grid.add_argument("--dry-run", action="store_true", help="print the plan and an estimated cost; run nothing")
    grid.add_argument("--archive", nargs="?", const="", default=None, metavar="DIR",
                      help="keep each finished task's small record in DIR (default: experiments/results/grids/<grid name>/ "
                      "of the repository, run from its root) and count archived tasks as done, so the grid finishes "
                      "over sessions that each commit the archive; the leaderboard is written there too")
    grid.set_defaults(func=cmd_grid)

    demo = sub.add_parser("demo", parents=[common], help="the main job on the embedded synthetic data set (no download)")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--seed", type=int, default=2)
    demo.add_argument("--method", help="unlearning method (default: scif when available, else untouched)")
    demo.add_argument("--fraction", type=float, default=0.003, help="share of interactions to forget")
    demo.set_defaults(func=cmd_demo)

    _add_data_commands(sub, common)

    args = parser.parse_args(argv)
    if args.quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    enable_compilation_cache()
    from erase_jax.folder_lock import FolderInUse

    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, FolderInUse) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"erase-jax: error: {message}", file=sys.stderr)
        return 2
    except Exception as error:  # an accelerator or host out of memory: said plainly, the rest is a bug
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        print(f"erase-jax {args.command}: out of memory ({str(error).strip()}). What finished is saved and the "
              "same command resumes from it; make the work smaller (e.g. a method's retain-sample or batch option, "
              "eval.block_size) or run on a machine with more memory.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
